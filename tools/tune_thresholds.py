#!/usr/bin/env python3
"""Re-tune a model package's score and NMS thresholds on held-out synthetic data (never realval).

    python tools/tune_thresholds.py runs/default/model data/train-mix-val [--images 2000]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kdetect.fsutil import write_atomic  # noqa: E402
from kdetect.package import CONFIG, TRAINING, load_package, read_training  # noqa: E402
from kdetect.training.detector import string_accuracy, tune_thresholds  # noqa: E402
from kdetect.training.loop import validation_arrays  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("val_data")
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args()
    detector, cfg = load_package(args.model)
    images, texts = validation_arrays(args.val_data, cfg, args.images)
    before = string_accuracy(detector, images, texts, cfg)
    tuned = tune_thresholds(detector, images, texts, cfg)
    after = string_accuracy(detector, images, texts, tuned)
    write_atomic(args.model / CONFIG, tuned.to_json())
    training = read_training(args.model) or {}
    training.update(val_string_accuracy=after, thresholds_tuned_on=args.val_data)
    write_atomic(args.model / TRAINING, json.dumps(training, indent=2) + "\n")
    print(f"score {cfg.score_threshold} -> {tuned.score_threshold}, nms {cfg.nms_iou} -> {tuned.nms_iou}: "
          f"accuracy {before:.4f} -> {after:.4f} on {len(texts)} images")


if __name__ == "__main__":
    main()
