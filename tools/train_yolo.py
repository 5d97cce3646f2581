#!/usr/bin/env python3
"""Train the detector: the same as `kdetect train CONFIG [--epochs N] [--steps-per-epoch N] [--out-dir D]
[--devices /cpu:0,/cpu:1]`. Run it again after a kill to resume from the last finished epoch.

Make the data first, e.g.:
    kdetect generate --preset train-mix --count 300000 --seed 1 --out data/train-mix --tfrecord
    kdetect generate --preset train-mix --count 2000 --seed 2 --out data/train-mix-val --tfrecord
then:
    python tools/train_yolo.py configs/train/default.json
"""

import sys

from kdetect.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
