"""Released packages, named by version and digest, as a training run's starting point.

A path such as kdetect/models/default names whatever the folder holds today, which changes with
every release, so a run that continued it cannot be repeated. A release reference,
`default@2026.12.03#sha256:<digest>`, names one package for good: configs/releases.json says at
which git commit and path that version was committed, the files are read from git history, and
the digest (of every file's name and content) must match before training starts from them.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from kdetect.configio import read_json
from kdetect.errors import ConfigError
from kdetect.fsutil import MARKER, staged_output

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "configs" / "releases.json"
RELEASES = "releases"  # the folder beside a run that caches the releases it starts from
REFERENCE = re.compile(r"(?P<name>[a-z0-9][a-z0-9-]*)@(?P<version>[0-9][0-9a-z.+-]*)#sha256:(?P<digest>[0-9a-f]{64})")


def is_release(init_from: str | None) -> bool:
    """True for a string shaped like a release reference rather than a folder path."""
    return bool(init_from) and "@" in init_from and "#sha256:" in init_from


def parse_reference(ref: str) -> tuple[str, str, str]:
    """`name@version#sha256:digest` -> (name, version, digest)."""
    found = REFERENCE.fullmatch(ref)
    if not found:
        raise ConfigError(f"{ref!r} is not a release reference; write it as name@version#sha256:<64 hex digits>, "
                          "as configs/releases.json lists them")
    return found["name"], found["version"], found["digest"]


def package_digest(folder: str | Path) -> str:
    """sha256 over the sorted lines `relative path <tab> sha256 of the file` of every file in folder
    but kdetect's output marker, which lists the folder's entries and is rewritten on every copy."""
    folder = Path(folder)
    lines = sorted(f"{p.relative_to(folder).as_posix()}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n"
                   for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != MARKER)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def registry(path: Path = REGISTRY) -> dict:
    if not path.is_file():
        raise ConfigError(f"no release registry at {path}: release references resolve only in a git clone of kdetect")
    return read_json(path, "release registry")


def release_entry(name: str, version: str, table: dict) -> dict:
    versions = table.get(name, {})
    if version not in versions:
        known = ", ".join(f"{n}@{v}" for n, vs in sorted(table.items()) for v in sorted(vs)) or "none"
        raise ConfigError(f"no release {name}@{version} in configs/releases.json; known: {known}")
    return versions[version]


def _git(*args: str) -> bytes:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True).stdout
    except FileNotFoundError:
        raise ConfigError("release references read git history, and git is not installed: install git") from None
    except subprocess.CalledProcessError as err:
        message = err.stderr.decode(errors="replace").strip()
        raise ConfigError(f"git {' '.join(args[:2])} failed in {REPO} ({message}); a release is read from the "
                          "repository's history: use a full clone (git fetch --unshallow)") from None


def fetch_release(ref: str, cache: str | Path, table: dict | None = None) -> Path:
    """The released package `ref` names, written from git history into cache/<name>@<version> (kept
    there for the next run) and checked against its digest; -> that folder."""
    name, version, digest = parse_reference(ref)
    entry = release_entry(name, version, registry() if table is None else table)
    if entry.get("sha256") != digest:
        raise ConfigError(f"{ref} does not match configs/releases.json, which gives {name}@{version} the digest "
                          f"{entry.get('sha256')}; copy the reference from there")
    target = Path(cache) / f"{name}@{version}"
    if target.is_dir() and package_digest(target) == digest:
        return target
    files = _git("ls-tree", "-r", "-z", "--name-only", entry["commit"], "--", entry["path"]).split(b"\0")
    files = [f.decode() for f in files if f]
    if not files:
        raise ConfigError(f"commit {entry['commit']} holds nothing at {entry['path']}: configs/releases.json is wrong")
    with staged_output(target) as staged:
        for file in files:
            out = staged / Path(file).relative_to(entry["path"])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(_git("show", f"{entry['commit']}:{file}"))
        found = package_digest(staged)
        if found != digest:
            raise ConfigError(f"{name}@{version} read from commit {entry['commit']} has the digest {found}, "
                              f"not {digest}: the registry or the history was changed")
    return target


def starting_package(init_from: str | None, cache: str | Path) -> Path | None:
    """Where a run's init_from lies on disk: a release fetched into cache, or the folder it names."""
    if not init_from:
        return None
    return fetch_release(init_from, cache) if is_release(init_from) else Path(init_from)
