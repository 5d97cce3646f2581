#!/usr/bin/env python3
"""Train the glyph reader (the detector's second stage): the same as `kdetect train-glyphs CONFIG
[--epochs N] [--steps-per-epoch N] [--out-dir D] [--detector PACKAGE] [--force]`. Run it again
after a kill to resume from the last finished epoch.

    python tools/train_glyphs.py configs/train/glyphs-33.json --detector runs/real-32/model

The reader learns from the training data's exact glyph boxes; with a detector package it also
writes the two-stage package OUT_DIR/model, which `kdetect solve/eval --model` read.
"""

import sys

from kdetect.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-glyphs", *sys.argv[1:]]))
