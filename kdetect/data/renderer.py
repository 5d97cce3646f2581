"""Drive kcaptcha_bbox, the PHP renderer, and find its presets."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from kdetect.errors import ConfigError, RendererError

# The renderer is pure PHP loops; opcache's JIT makes it several times faster. The settings are
# ignored where opcache is not installed, so they are always safe to pass.
PHP_JIT = ["-d", "opcache.enable_cli=1", "-d", "opcache.jit_buffer_size=64M", "-d", "opcache.jit=tracing"]
INSTALL_HINT = "install it with: apt-get install php-cli php-gd"


def resource_dir(name: str) -> Path:
    """A non-Python folder shipped with kdetect: inside the package once installed, else the checkout's."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise RendererError(f"kdetect is installed without its '{name}' folder; reinstall it with pip install .")


def renderer_script() -> Path:
    return resource_dir("kcaptcha_bbox") / "batch.php"


def preset_names() -> list[str]:
    return sorted(p.stem for p in resource_dir("configs").glob("*.json"))


def preset_path(name: str) -> Path:
    path = resource_dir("configs") / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}'; choose one of: {', '.join(preset_names())}")
    return path


def load_config(path: str | Path) -> dict:
    """Read a render config, making a relative 'fonts' folder relative to the config file."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"config file '{path}' is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"config file '{path}' must hold a JSON object of render options")
    fonts = config.get("fonts")
    if isinstance(fonts, str) and not Path(fonts).is_absolute() and (path.parent / fonts).is_dir():
        config["fonts"] = str((path.parent / fonts).resolve())
    return config


def with_fonts(config: dict, folders: list[str | Path]) -> dict:
    """config drawing with the strips in folders instead of its own (with several, each image
    draws a folder first, then a strip in it); a missing folder is refused, naming where strips come from."""
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise ConfigError(f"--fonts {folder}: no such folder; point it at KCAPTCHA's fonts (a Gnuboard "
                              f"checkout's plugin/kcaptcha/fonts) or make strips with "
                              f"python tools/make_fonts.py --out {folder}")
    resolved = [str(Path(f).resolve()) for f in folders]
    return {**config, "fonts": resolved[0] if len(resolved) == 1 else resolved}


@functools.cache
def php_binary() -> str:
    """The php executable, checked once for the GD extension."""
    php = shutil.which("php")
    if php is None:
        raise RendererError(f"PHP is not installed (no 'php' on PATH); {INSTALL_HINT}")
    probe = subprocess.run([php, "-r", "echo function_exists('imagecreatetruecolor') ? 'gd' : 'none';"],
                           capture_output=True, text=True)
    if probe.stdout.strip() != "gd":
        raise RendererError(f"PHP at {php} has no GD extension; {INSTALL_HINT}")
    return php


def check_config(config_file: Path, name: str | None = None) -> dict[str, str]:
    """Validate a config with the renderer itself (one source of truth); returns {font name: sha256 of its strip},
    which pins down the fonts a dataset was drawn with. name: how an error names the config
    (default: config_file), e.g. the user's own file where config_file is a copy of it."""
    proc = subprocess.run([php_binary(), *PHP_JIT, str(renderer_script()), "--config", str(config_file), "--check"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(_php_message(proc.stderr, name or config_file))
    found = json.loads(proc.stdout)
    return {name: hashlib.sha256(Path(file).read_bytes()).hexdigest()
            for name, file in zip(found["fonts"], found["font_files"])}


def render(config_file: Path, seed: int, start: int, count: int, out_dir: Path,
           track: bool = True, solo: int | None = None) -> Iterator[dict]:
    """Render images [start, start+count) into out_dir, yielding each annotation as it is written."""
    cmd = [php_binary(), *PHP_JIT, str(renderer_script()), "--config", str(config_file), "--seed", str(seed),
           "--start", str(start), "--count", str(count), "--out", str(out_dir)]
    if not track:
        cmd.append("--no-track")
    if solo is not None:
        cmd += ["--solo", str(solo)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            yield json.loads(line)
        stderr = proc.stderr.read()
    if proc.returncode != 0:
        raise RendererError(_php_message(stderr, config_file))


def _php_message(stderr: str, config_file: Path | str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    detail = lines[-1].removeprefix("kcaptcha_bbox: ") if lines else "the renderer failed without a message"
    return f"{config_file}: {detail}"
