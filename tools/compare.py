#!/usr/bin/env python3
"""The detector against the classifier baseline: the same as `kdetect compare [CONFIG] [--docs DIR]`.

Measures both shipped models (or the packages the config names) on fresh synthetic captchas of
every preset and on ../shared/realval, trains both on 1k..50k images for the learning curves,
and writes docs/comparison.md with its plots. Needs the l2 data the curve configs name:
    kdetect generate --preset l2 --count 50000 --seed 11 --out data/l2-train --tfrecord
    kdetect generate --preset l2 --count 1000 --seed 12 --out data/l2-val --tfrecord
"""

import sys

from kdetect.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
