#!/usr/bin/env python3
"""Compare our presets with real KCAPTCHA images: ink fraction and text extent, per preset.

    python tools/fidelity.py [--count 500] [--realval ../shared/realval] [--out out/fidelity]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from kdetect.data import renderer
from kdetect.data.fidelity import compare, folder_stats
from kdetect.data.generate import DatasetSpec, generate
from kdetect.presets import ENGINE_PRESETS, realval_dir



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--realval", type=Path, default=realval_dir())
    parser.add_argument("--out", type=Path, help="keep the rendered images here (default: a temporary folder)")
    parser.add_argument("--tolerance", type=float, default=0.15)
    args = parser.parse_args()
    if not args.realval.is_dir():
        print(f"no real captchas at {args.realval}; nothing to compare against")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        return compare_presets(args, args.out or Path(scratch))


def compare_presets(args: argparse.Namespace, out: Path) -> int:
    print(f"{'preset':<11} {'stat':<13} {'ours':>9} {'real':>9} {'diff':>7}")
    worst = 0.0
    for preset in ENGINE_PRESETS:
        spec = DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=args.seed,
                           count=args.count, preset=preset)
        folder = out / preset
        generate(spec, folder)
        ours = folder_stats(sorted(folder.glob("*.jpg")))
        real = folder_stats(sorted((args.realval / preset).glob("*.jpg")))
        for stat, diff in compare(ours, real).items():
            worst = max(worst, diff)
            print(f"{preset:<11} {stat:<13} {ours[stat]:>9.4f} {real[stat]:>9.4f} {diff:>6.1%}")
    verdict = "within" if worst <= args.tolerance else "OUTSIDE"
    print(f"largest difference {worst:.1%}: {verdict} the {args.tolerance:.0%} tolerance")
    return 0 if worst <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
