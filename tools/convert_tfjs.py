#!/usr/bin/env python3
"""Export a model package as a TF.js graph model plus metadata.json; the same as
`kdetect export tfjs --model DIR --out web/model [--quantize none|float16|uint8]`."""

import sys

from kdetect.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", "tfjs", *sys.argv[1:]]))
