#!/usr/bin/env python3
"""Solver speed and accuracy, against ddddocr (the off-the-shelf captcha OCR a user tries first).

    python bench/bench_solve.py [--model DIR] [--backend lite|tf] [--realval ../shared/realval] [--repeats 300]

Prints kdetect's median single-image latency after warm-up (goal on the 2-core machine: <= 10 ms)
and its batched throughput, then ddddocr's latency and throughput measured the same way in the
same run (goal: kdetect faster in both), both tools' full-string accuracy on the same images
(../shared/realval where present, else fresh synthetic captchas) and the speed ratios.
ddddocr is installed here, for the benchmark only; it is no dependency of kdetect.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kdetect.images import load_image  # noqa: E402
from kdetect.presets import ENGINE_PRESETS, realval_dir  # noqa: E402
from kdetect.serving.evaluate import read_labels  # noqa: E402
from kdetect.serving.reader import BACKENDS  # noqa: E402
from kdetect.serving.solver import Solver  # noqa: E402


def labelled_images(realval: Path, scratch: Path) -> dict[str, list[tuple[bytes, str]]]:
    """{set name: [(encoded image, answer)]}: the real folders, or synthetic ones made now."""
    if realval.is_dir():
        folders = {p.name: p for p in sorted(realval.iterdir()) if (p / "labels.tsv").is_file()}
    else:
        from kdetect.data import renderer
        from kdetect.data.generate import DatasetSpec, generate

        folders = {}
        for preset in ENGINE_PRESETS:
            spec = DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=99, count=200)
            generate(spec, scratch / preset)
            folders[f"synthetic {preset}"] = scratch / preset
    return {name: [(p.read_bytes(), t) for p, t in read_labels(folder)] for name, folder in folders.items()}


def ddddocr_reader():
    try:
        ddddocr = importlib.import_module("ddddocr")
    except ImportError:
        print("installing ddddocr for this benchmark ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "ddddocr"], check=True)
        ddddocr = importlib.import_module("ddddocr")
    ocr = ddddocr.DdddOcr(show_ad=False)
    return lambda data: ocr.classification(data).strip().lower()


def median_ms(read, items: list[bytes], repeats: int) -> float:
    for data in items[:20]:
        read(data)
    times = []
    for i in range(repeats):
        data = items[i % len(items)]
        start = time.perf_counter()
        read(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def median_rate(run, count: int) -> float:
    """Images per second of run() (which reads `count` images), the median of three passes: one
    pass is a few seconds, easily disturbed."""
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model package (default: the shipped one)")
    parser.add_argument("--realval", type=Path, default=realval_dir())
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--backend", choices=BACKENDS, default=BACKENDS[0], help="how Solver runs the network")
    parser.add_argument("--no-alphabet-guess", dest="alphabet_guess", action="store_false",
                        help="read every captcha with all characters (what the alphabet guess costs and gains)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sets = labelled_images(args.realval, Path(scratch))
    everything = [item for items in sets.values() for item in items]
    encoded = [data for data, _ in everything]

    solver = Solver(args.model, backend=args.backend, guess_alphabet=args.alphabet_guess)
    kd_ms = median_ms(lambda d: solver.read(d), encoded, args.repeats)
    arrays = [load_image(d) for d in encoded]
    solver.read_batch(arrays[:64])
    throughput = median_rate(lambda: solver.read_batch(arrays), len(arrays))  # the default batch size
    print(f"kdetect: median single-image latency {kd_ms:.2f} ms (goal <= 10), batched {throughput:.0f} images/s "
          f"over {len(arrays)} images, {os.cpu_count()} cores, backend {args.backend}"
          + ("" if args.alphabet_guess else ", no alphabet guess"))

    dddd = ddddocr_reader()
    dd_ms = median_ms(dddd, encoded, min(args.repeats, 200))
    # ddddocr reads one image per call (it has no batch API): its throughput is that, end to end.
    dd_rate = median_rate(lambda: [dddd(d) for d in encoded[:400]], min(len(encoded), 400))
    print(f"ddddocr: median single-image latency {dd_ms:.2f} ms, {dd_rate:.0f} images/s")
    print(f"{'set':<22} {'images':>6} {'kdetect':>8} {'ddddocr':>8}")
    totals = [0, 0, 0]
    for name, items in sets.items():
        answers = [t for _, t in items]
        ours = [r.text for r in solver.read_batch([d for d, _ in items])]
        theirs = [dddd(d) for d, _ in items]
        kd = sum(a == b for a, b in zip(ours, answers))
        dd = sum(a == b for a, b in zip(theirs, answers))
        totals = [totals[0] + len(items), totals[1] + kd, totals[2] + dd]
        print(f"{name:<22} {len(items):>6} {kd / len(items):>8.2%} {dd / len(items):>8.2%}")
    print(f"{'all':<22} {totals[0]:>6} {totals[1] / totals[0]:>8.2%} {totals[2] / totals[0]:>8.2%}")
    print(f"kdetect is {dd_ms / kd_ms:.1f}x faster per image and {throughput / dd_rate:.1f}x in throughput than ddddocr")


if __name__ == "__main__":
    main()
