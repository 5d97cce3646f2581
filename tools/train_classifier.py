#!/usr/bin/env python3
"""Train the fixed-length classifier baseline: the same as `kdetect train-classifier CONFIG [--epochs N]
[--steps-per-epoch N] [--out-dir D] [--weights imagenet] [--devices /cpu:0,/cpu:1]`. Run it again
after a kill to resume from the last finished epoch.

Make the 2-digit data first:
    kdetect generate --preset l2 --count 50000 --seed 11 --out data/l2-train --tfrecord
    kdetect generate --preset l2 --count 1000 --seed 12 --out data/l2-val --tfrecord
then:
    python tools/train_classifier.py configs/train/baseline-l2.json

The package lands in runs/baseline-l2/model/; read it with `kdetect solve/eval --model runs/baseline-l2/model`.
"""

import sys

from kdetect.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-classifier", *sys.argv[1:]]))
