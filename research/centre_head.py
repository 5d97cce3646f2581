#!/usr/bin/env python3
"""Research: train the column-by-column glyph centre head (research/centres.py) on a
frozen detector, or read test sets with it. Run from the repository root:

    python research/centre_head.py train --package kdetect/models/default --train data/mixw \\
        --val data/mixw-val --out runs/centres-44 [--epochs 10 --steps 500]
    python research/centre_head.py read --package kdetect/models/default --head runs/centres-44/head.npz \\
        [--own-features] [--glyphs-from kdetect/models/default] SET_DIR [SET_DIR ...]
        (each SET_DIR holding preset folders with labels.tsv; --glyphs-from: the head places the
        glyphs, that package's glyph reader names them)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import centres  # noqa: E402  (research/centres.py, beside this script)

PRESETS = ("gnuboard5", "l2", "varlen", "kcaptcha21")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("train", "read"))
    parser.add_argument("sets", nargs="*", type=Path)
    parser.add_argument("--package", default="kdetect/models/default")
    parser.add_argument("--train")
    parser.add_argument("--val")
    parser.add_argument("--out")
    parser.add_argument("--head", type=Path)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=44)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--reject", type=float, default=0.5)
    parser.add_argument("--distance", type=float, default=3.0)
    parser.add_argument("--show", type=int, default=0, help="list this many misreads per preset")
    parser.add_argument("--own-features", action="store_true", help="a column reader with its own features")
    parser.add_argument("--glyphs-from", help="a two-stage package whose glyph reader names the glyphs the head places")
    args = parser.parse_intermixed_args()
    if args.action == "train":
        centres.train_centre_head(args.package, args.train, args.val, args.out, epochs=args.epochs,
                                  steps_per_epoch=args.steps, seed=args.seed, own_features=args.own_features, log=lambda s: print(s, flush=True))
        return
    from kdetect.package import load_package

    detector, cfg = load_package(args.package)
    head = centres.column_reader(cfg) if args.own_features else centres.centre_head(detector, cfg)
    centres.load_head(head, args.head)
    glyph_reader, crop_width = None, 40
    if args.glyphs_from:
        from kdetect.package import load_glyph_reader

        glyph_reader, gcfg = load_glyph_reader(args.glyphs_from)
        crop_width = gcfg.crop_width
    for folder in args.sets:
        cells = []
        for preset in PRESETS:
            if not (folder / preset / "labels.tsv").is_file():
                cells.append("-")
                continue
            results = centres.read_folder(head, cfg, folder / preset, args.limit, glyph_reader, crop_width,
                                          reject=args.reject, distance=args.distance)
            wrong = [r for r in results if r[1] != r[2]]
            cells.append(f"{len(wrong)}/{len(results)}")
            if args.show:
                print(preset, wrong[:args.show])
        print(f"{folder}: " + " / ".join(cells), flush=True)


if __name__ == "__main__":
    main()
