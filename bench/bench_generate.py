#!/usr/bin/env python3
"""Dataset generation speed: gnuboard5 into TFRecords on every core, and the cost of box tracking.

    python bench/bench_generate.py [--count 5000] [--workers N]

Goals on the 2-core development machine: >= 100 images/s, tracking <= 30% over plain rendering.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow  # noqa: E402,F401  (imported up front so its start-up is not timed)

from kdetect.data import renderer  # noqa: E402
from kdetect.data.generate import DatasetSpec, generate  # noqa: E402


def time_dataset(count: int, workers: int | None, scratch: Path) -> float:
    spec = DatasetSpec(config=renderer.load_config(renderer.preset_path("gnuboard5")), seed=1, count=count,
                       tfrecord=True, preset="gnuboard5")
    start = time.perf_counter()
    generate(spec, scratch / "tfrecord", workers=workers)
    return time.perf_counter() - start


def time_render(count: int, track: bool, scratch: Path) -> float:
    """One PHP process, so tracking's share is not blurred by scheduling."""
    config = scratch / "gnuboard5.json"
    config.write_text(renderer.preset_path("gnuboard5").read_text())
    out = scratch / ("tracked" if track else "plain")
    start = time.perf_counter()
    for _ in renderer.render(config, seed=1, start=0, count=count, out_dir=out, track=track):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="kdetect-bench-"))
    try:
        seconds = time_dataset(args.count, args.workers, scratch)
        print(f"gnuboard5 -> TFRecords: {args.count} images in {seconds:.2f} s = {args.count / seconds:.0f} images/s "
              f"on {os.cpu_count()} cores (goal >= 100)")
        plain = min(time_render(args.count // 2, False, scratch) for _ in range(2))
        tracked = min(time_render(args.count // 2, True, scratch) for _ in range(2))
        print(f"rendering {args.count // 2} images in one process: {plain:.2f} s plain, {tracked:.2f} s with box "
              f"tracking = {tracked / plain - 1:+.1%} (goal <= +30%)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
