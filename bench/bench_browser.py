#!/usr/bin/env python3
"""The exported model in the browser: download size and in-page inference time.

    python bench/bench_browser.py [--web web] [--count 200] [--backends wasm,webgl,cpu]

Prints the size of web/model (model.json and weight shards, a second stage's included: what a
visitor downloads; goal <= 8 MB, against about 32 MB for the original DenseNet121), and for each
TF.js backend the median time the page takes per image in headless Chromium (pixels to raw
outputs read back; with a second stage, both graphs and the JavaScript decoding between them),
over fresh gnuboard5 captchas after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kdetect.data import renderer  # noqa: E402
from kdetect.data.generate import DatasetSpec, generate  # noqa: E402
from kdetect.errors import KdetectError  # noqa: E402
from kdetect.research.browser import open_demo  # noqa: E402
from kdetect.serving.export import exported_size  # noqa: E402
from kdetect.serving.web import web_dir  # noqa: E402

WARMUP = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--web", type=Path, default=None, help="the demo folder (default: web/ of this checkout)")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--backends", default="wasm,webgl,cpu",
                        help="comma-separated TF.js backends to time; the first is what the page picks by default")
    args = parser.parse_args()

    folder = args.web or web_dir()
    meta = json.loads((folder / "model" / "metadata.json").read_text())
    print(f"model: {folder / 'model'} ({meta['kind']}, weights {meta.get('quantize', 'none')}, "
          f"input {meta['input_height']}x{meta['input_width']})")
    print(f"size: {exported_size(folder / 'model') / 1e6:.2f} MB (goal <= 8 MB; the DenseNet121 original: ~32 MB)")

    with tempfile.TemporaryDirectory(prefix="kdetect-bench-") as scratch:
        spec = DatasetSpec(config=renderer.load_config(renderer.preset_path("gnuboard5")), seed=args.seed,
                           count=args.count + WARMUP)
        generate(spec, scratch)
        anns = [json.loads(line) for line in (Path(scratch) / "annotations.jsonl").open()]
        files = [Path(scratch) / a["file"] for a in anns]
        print(f"{'backend':<8} {'median ms':>9} {'p90 ms':>7} {'accuracy':>8}  (headless Chromium, {args.count} gnuboard5 images)")
        for backend in args.backends.split(","):
            try:
                with open_demo(folder, backend=backend) as page:
                    results = page.read_files(files)
                    used = page.backend
            except KdetectError as err:
                print(f"{backend:<8} unavailable: {err}")
                continue
            times = sorted(r["ms"] for r in results[WARMUP:])
            right = sum(r["text"] == a["text"] for r, a in zip(results[WARMUP:], anns[WARMUP:]))
            print(f"{used:<8} {statistics.median(times):>9.1f} {times[int(0.9 * (len(times) - 1))]:>7.1f} "
                  f"{right / len(times):>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
