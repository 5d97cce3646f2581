#!/usr/bin/env python3
"""`kdetect serve` under load against the same model read in-process, in one run.

    python bench/bench_serve.py [--requests 1000] [--clients 32] [--workers 1 2] [--realval ../shared/realval]

Prints the in-process batched throughput (bench_solve.py's figure: Solver.read_batch over the
decoded captchas, median of three passes), then for each --workers a load test of a server it
starts on 127.0.0.1 (tools/load_test.py: POST /solve, the raw image as the body, from --clients
keep-alive connections): throughput, p50/p99 latency, errors, and throughput as a share of the
in-process figure (the goal: at least 70%). The server decodes each image and answers over HTTP;
the in-process figure starts from decoded arrays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from load_test import Server, labelled, realval_folders, report, run_load  # noqa: E402

from kdetect.images import load_image  # noqa: E402
from kdetect.serving.solver import Solver  # noqa: E402


def in_process_rate(items: list[tuple[bytes, str]]) -> float:
    """Images per second of Solver.read_batch over the decoded images, the median of three passes."""
    solver = Solver()
    arrays = [load_image(data) for data, _ in items]
    solver.read_batch(arrays[:64])
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        solver.read_batch(arrays)
        rates.append(len(arrays) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--time-limit", type=float, default=120, help="seconds of load at most, per server")
    parser.add_argument("--images", type=Path, nargs="+", default=realval_folders(),
                        help="folders of captchas with labels.tsv (default: every ../shared/realval folder)")
    args = parser.parse_args()
    if not args.images:
        parser.error("no labelled captchas: give --images FOLDER (images with a labels.tsv)")
    items = labelled(args.images)
    rate = in_process_rate(items)
    print(f"in-process: Solver.read_batch {rate:.0f} images/s over {len(items)} images, {os.cpu_count()} cores")
    for workers in args.workers:
        with Server(workers) as server:
            run_load(server.url, items[:64], 64, min(args.clients, 8), 30)  # warm-up
            result = run_load(server.url, items, args.requests, args.clients, args.time_limit)
        print(f"serve, {workers} worker{'s' if workers > 1 else ''}: {report(result)}; "
              f"{result['throughput'] / rate:.0%} of in-process")


if __name__ == "__main__":
    main()
