#!/usr/bin/env python3
"""Draw docs/presets/<preset>.png (ours, with boxes) beside <preset>-realval.png (real KCAPTCHA).

    python tools/preset_grids.py [--count 12] [--realval ../shared/realval] [--out docs/presets]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.data.show import load_samples, save_grid
from kdetect.presets import realval_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--realval", type=Path, default=realval_dir())
    parser.add_argument("--out", type=Path, default=Path("docs/presets"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for preset in renderer.preset_names():
            spec = DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=7, count=args.count,
                               preset=preset)
            generate(spec, Path(scratch) / preset)
            save_grid(load_samples(Path(scratch) / preset, args.count), args.out / f"{preset}.png", columns=3)
            print(f"wrote {args.out / f'{preset}.png'}")
            if (args.realval / preset).is_dir():
                save_grid(load_samples(args.realval / preset, args.count), args.out / f"{preset}-realval.png", columns=3)
                print(f"wrote {args.out / f'{preset}-realval.png'}")


if __name__ == "__main__":
    main()
