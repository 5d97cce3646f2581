#!/usr/bin/env python3
"""The plain install (`pip install kdetect`, no extras), measured in a fresh virtual environment.

    python bench/bench_light.py [--venv DIR] [--images ../shared/realval/gnuboard5] [--runs 5]

Creates DIR (default: a temporary folder) with `python -m venv`, runs `pip install` of this
checkout there without extras, then prints: the environment's size on disk (goal <= 300 MB),
whether TensorFlow imports there (it must not) and what `kdetect train` says there, whether it
reads the folder's captchas with the same answers as this (full) install, and the wall time of a
fresh process that reads one captcha, `python -c "from kdetect import solve; solve(...)"`, the
median of --runs, against ddddocr's first read measured the same way in the same run (ddddocr is
installed into this environment for the benchmark if missing, as bench_solve.py does).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

READ_ALL = """
import json, sys
from kdetect import Solver
from kdetect.serving.evaluate import read_labels
items = read_labels(sys.argv[1])
print(json.dumps([r.text for r in Solver().read_batch([p for p, _ in items])]))
"""


def disk_mb(folder: Path) -> float:
    """What `du -s` counts: allocated blocks, each hard-linked file once."""
    seen, total = set(), 0
    for root, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total / 2**20


def wall_s(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    from kdetect.presets import realval_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, help="where to make the environment (default: a temporary folder)")
    parser.add_argument("--images", type=Path, default=realval_dir() / "gnuboard5", help="captchas with labels.tsv")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kdetect-light-") as scratch:
        venv = args.venv or Path(scratch) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", str(REPO)], check=True)
        print(f"plain install: {disk_mb(venv):.0f} MB on disk ({venv})")

        tf = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, text=True)
        print(f"`import tensorflow` there: {'fails' if tf.returncode else 'WORKS'} "
              f"({tf.stderr.strip().splitlines()[-1] if tf.stderr.strip() else ''})")
        train = subprocess.run([str(venv / "bin" / "kdetect"), "train", "run.json"], capture_output=True, text=True)
        print(f"`kdetect train run.json` there: exit {train.returncode}, {train.stderr.strip()}")

        light = json.loads(subprocess.run([python, "-c", READ_ALL, str(args.images)], check=True,
                                          capture_output=True, text=True, cwd=scratch).stdout)
        full = json.loads(subprocess.run([sys.executable, "-c", READ_ALL, str(args.images)], check=True,
                                         capture_output=True, text=True).stdout)
        same = sum(a == b for a, b in zip(light, full))
        print(f"{args.images}: the plain install's answers equal the full install's on {same} of {len(full)}")

        if importlib.util.find_spec("ddddocr") is None:
            print("installing ddddocr for this benchmark ...", flush=True)
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "ddddocr"], check=True)
        image = str(sorted(args.images.glob("*.jpg"))[0])
        ours = [python, "-c", f"from kdetect import solve; solve({image!r})"]
        theirs = [sys.executable, "-c", "import ddddocr; ocr = ddddocr.DdddOcr(show_ad=False); "
                                        f"ocr.classification(open({image!r}, 'rb').read())"]
        wall_s(ours), wall_s(theirs)  # the first of each pays for a cold file cache
        times: dict[str, list[float]] = {"kdetect": [], "ddddocr": []}
        for _ in range(args.runs):  # interleaved: both see the same load on the machine
            times["kdetect"].append(wall_s(ours))
            times["ddddocr"].append(wall_s(theirs))
        k, d = (statistics.median(times[n]) for n in ("kdetect", "ddddocr"))
        print(f"a fresh process reads its first captcha: kdetect (plain install) {k:.2f} s, ddddocr {d:.2f} s "
              f"(medians of {args.runs}, {os.cpu_count()} cores; goal <= 1.0 s)")


if __name__ == "__main__":
    main()
