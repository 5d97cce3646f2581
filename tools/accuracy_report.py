#!/usr/bin/env python3
"""Accuracy of a model package on fresh synthetic captchas of every preset and on ../shared/realval.

    python tools/accuracy_report.py [--model DIR] [--count 1000] [--seed 4242] [--fonts DIR ...]

The synthetic captchas are drawn with the presets' own font strips, or with --fonts: KCAPTCHA's
(../shared/kcaptcha-fonts) for the real engines' faces, or strips no model trained on
(python tools/make_fonts.py --unseen --out data/fonts-unseen) for fonts a site may swap in.

The same numbers come from `kdetect generate ... && kdetect eval DIR`; this runs them all and
prints one Markdown table (the README's).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kdetect.data import renderer  # noqa: E402
from kdetect.data.generate import DatasetSpec, generate  # noqa: E402
from kdetect.presets import ENGINE_PRESETS, realval_dir  # noqa: E402
from kdetect.serving.evaluate import evaluate  # noqa: E402
from kdetect.serving.solver import Solver  # noqa: E402

KCAPTCHA21_SYMBOLS = "23456789abcdegikpqsvxyz"  # the renderer's default, which kcaptcha21.json keeps


def preset_symbols(config: dict) -> str:
    """Every symbol a preset's answers can hold (its allowed_symbols, or the renderer's default)."""
    allowed = config.get("allowed_symbols", KCAPTCHA21_SYMBOLS)
    choices = allowed["choice"] if isinstance(allowed, dict) else [allowed]
    return "".join(sorted(set("".join(choices))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=4242, help="a seed no training or validation set used")
    parser.add_argument("--realval", type=Path, default=realval_dir())
    parser.add_argument("--out", type=Path, default=Path("out/accuracy"))
    parser.add_argument("--fonts", type=Path, nargs="+", help="folders of font strips to draw the synthetic captchas with")
    parser.add_argument("--no-realval", dest="realval_too", action="store_false", help="synthetic captchas only")
    parser.add_argument("--known-symbols", action="store_true",
                        help="read each preset with its allowed_symbols, as a site owner who knows them would")
    args = parser.parse_args()
    print("| preset | synthetic full-string | synthetic per-char | realval full-string | realval per-char |")
    print("|---|---|---|---|---|")
    for preset in ENGINE_PRESETS:
        config = renderer.load_config(renderer.preset_path(preset))
        solver = Solver(args.model, preset_symbols(config) if args.known_symbols else None)
        if args.fonts:
            folders = [str(f.resolve()) for f in args.fonts]
            config["fonts"] = folders[0] if len(folders) == 1 else folders
        spec = DatasetSpec(config=config, seed=args.seed, count=args.count, preset=preset)
        generate(spec, args.out / preset)
        syn = evaluate(solver, args.out / preset)
        cells = [f"{syn['accuracy']:.2%} of {syn['images']}", f"{syn['char_accuracy']:.2%}"]
        if not args.realval_too:
            cells += ["not read", "not read"]
        elif (args.realval / preset).is_dir():
            real = evaluate(solver, args.realval / preset)
            cells += [f"{real['accuracy']:.2%} of {real['images']}", f"{real['char_accuracy']:.2%}"]
        else:
            cells += ["absent", "absent"]
        print(f"| {preset} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
