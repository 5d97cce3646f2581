"""Writing files so that a crash never leaves one half-written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_atomic(path: str | Path, text: str) -> None:
    """Write to a temporary name beside the file, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def replace_dir(staged: str | Path, target: str | Path) -> None:
    """Put a fully written folder in place of target: a reader sees the old folder or the new one."""
    staged, target = Path(staged), Path(target)
    # mkdtemp makes 0700 folders; a model or dataset folder should read like any other.
    staged.chmod(0o755)
    if target.exists():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, target)
