#!/usr/bin/env python3
"""How wide a detector this CPU can afford: network-only throughput of untrained detectors.

    python bench/bench_width.py [--widths 0.5 0.75 1.0] [--batch 64] [--repeats 10]

Builds the shipped detector's network (its input size, strides and anchors) at each width
multiplier with random weights, converts it as `Solver` does (TFLite, uint8 input) and prints its
parameters and median batched images/s. Decoding adds ~0.4 ms per image on top; the solve goal is
>= 300 images/s in all, so a width whose network alone is slower than that cannot meet it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from kdetect.detector.model import build_detector  # noqa: E402
from kdetect.package import default_model_dir, load_package  # noqa: E402
from kdetect.serving.lite import LiteInference, convert, output_shapes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    _, shipped = load_package(default_model_dir())
    # KCAPTCHA's own size (160x60); the converted model resizes to the input size itself.
    images = np.random.default_rng(0).integers(0, 256, (args.batch, 60, 160, 3), dtype=np.uint8)
    print(f"shipped detector: width x{shipped.width_multiplier}, input {shipped.input_height}x{shipped.input_width}")
    for width in args.widths:
        cfg = dataclasses.replace(shipped, width_multiplier=width)
        network = build_detector(cfg)
        run = LiteInference(convert(network, cfg), output_shapes(network))
        for _ in range(3):
            run(images)
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run(images)
            seconds.append(time.perf_counter() - start)
        print(f"width x{width}: {network.count_params():,} parameters, network alone "
              f"{args.batch / statistics.median(seconds):.0f} images/s (batch {args.batch})", flush=True)


if __name__ == "__main__":
    main()
