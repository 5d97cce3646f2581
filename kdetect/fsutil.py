"""Writing files so that a crash never leaves one half-written, and never touching what the
user keeps: a folder is replaced only when everything in it is what kdetect wrote there."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kdetect.errors import OutputError

# Written into every folder kdetect publishes whole: the names of the entries it wrote.
MARKER = ".kdetect-output.json"
# What packages and exports written before the marker existed hold; such a folder holding
# nothing else is still recognised as kdetect's.
LEGACY_ENTRIES = frozenset({
    "detector.weights.h5", "classifier.keras", "config.json", "training.json", "MODEL_CARD.md",
    "metadata.json", "model.json", "model.tflite", "saved_model.pb", "variables", "assets", "fingerprint.pb",
    "glyphs.tflite", "lite.json",
})
TFJS_SHARD = re.compile(r"group\d+-shard\d+of\d+\.bin")


def write_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary name beside the file, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def staging_dir(target: str | Path) -> Path:
    """A fresh, empty folder beside target to write into before replace_dir puts it in place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staged-", dir=target.parent))


def foreign_entries(folder: str | Path) -> list[str]:
    """The entries of an existing folder that kdetect did not write (all of them for a folder
    without the marker, except those of a package or export written before it existed)."""
    folder = Path(folder)
    names = {p.name for p in folder.iterdir()}
    try:
        ours = set(json.loads((folder / MARKER).read_text())["entries"]) | {MARKER}
    except (OSError, ValueError, KeyError, TypeError):
        legacy = {n for n in names if n in LEGACY_ENTRIES or TFJS_SHARD.fullmatch(n)}
        ours = legacy if legacy == names else set()
    return sorted(names - ours)


def check_folder_path(target: str | Path) -> None:
    """Refuse an output folder path that is a file, or lies under one."""
    target = Path(target)
    for folder in (target, *target.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"{folder} is a file, not a folder; choose another --out")
            return


def check_replaceable(target: str | Path, force: bool = False) -> None:
    """Refuse an output path that is (or lies under) a file, or a folder holding what kdetect did
    not write (unless force: the user said so)."""
    target = Path(target)
    check_folder_path(target)
    if force or not target.is_dir():
        return
    foreign = foreign_entries(target)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{target} holds files kdetect did not write ({shown}); choose an empty or new --out "
                          "folder, or pass --force to replace the folder with all it holds")


def replace_dir(staged: str | Path, target: str | Path, force: bool = False) -> None:
    """Put a fully written folder in place of target: a reader sees the old folder or the new one.
    Only a folder of kdetect's own output is replaced (see check_replaceable); no other path,
    siblings included, is touched."""
    staged, target = Path(staged), Path(target)
    check_replaceable(target, force)
    entries = sorted(p.name for p in staged.iterdir() if p.name != MARKER)
    write_atomic(staged / MARKER, json.dumps({"written_by": "kdetect", "entries": entries}, indent=2) + "\n")
    # mkdtemp makes 0700 folders; a model or dataset folder should read like any other.
    staged.chmod(0o755)
    if not target.exists():
        os.replace(staged, target)
        return
    # A fresh name no one else uses, so the old folder's way out never meets a sibling of the user's.
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
    os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_output(target: str | Path, force: bool = False) -> Iterator[Path]:
    """A fresh folder to write target's new contents into; when the block ends well it is put in
    target's place (replace_dir). target is checked first, so a refusal comes before the work, and
    a block that fails (or a swap refused) leaves nothing half-written beside target."""
    target = Path(target)
    check_replaceable(target, force)
    staged = staging_dir(target)
    try:
        yield staged
        replace_dir(staged, target, force)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # gone already once it was swapped in
