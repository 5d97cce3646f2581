#!/usr/bin/env python3
"""What fine-tuning on a site's own labelled captchas buys, measured on ../shared/realval by
two-fold cross-validation: fine-tune on the first half of every folder, read the second half,
then the other way round; each image is read once by a model that never saw it.

    python tools/finetune_realval.py [--model DIR] [--out runs/finetune-realval] [--labelled N] [--folds 2]

--labelled N fine-tunes on only the first N labelled captchas of each half-folder (how many an
attacker needs); the reading is still of the whole other half.

The halves are links in a scratch folder (realval is never copied). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kdetect.presets import realval_dir  # noqa: E402
from kdetect.serving.evaluate import evaluate, read_labels  # noqa: E402
from kdetect.serving.solver import Solver  # noqa: E402
from kdetect.training.finetune import FinetuneConfig, finetune  # noqa: E402


def halves(realval: Path, scratch: Path, labelled: int | None = None) -> list[list[Path]]:
    """[first halves, second halves]: one linked folder per realval folder and half, each
    listing only its first `labelled` images if given."""
    out: list[list[Path]] = [[], []]
    for folder in sorted(p for p in realval.iterdir() if (p / "labels.tsv").is_file()):
        rows = read_labels(folder)
        cut = len(rows) // 2
        for k, part in enumerate((rows[:cut], rows[cut:])):
            target = scratch / f"half{k}" / folder.name
            target.mkdir(parents=True)
            for path, _ in part:
                (target / path.name).symlink_to(path.resolve())
            (target / "labels.tsv").write_text("".join(f"{p.name}\t{a}\n" for p, a in part[:labelled]))
            out[k].append(target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="detector package to start from (default: the shipped one)")
    parser.add_argument("--realval", type=Path, default=realval_dir())
    parser.add_argument("--out", type=Path, default=Path("runs/finetune-realval"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labelled", type=int, help="labelled captchas per folder to fine-tune on (default: half)")
    parser.add_argument("--folds", type=int, choices=(1, 2), default=2, help="1: fine-tune on the first halves only")
    args = parser.parse_args()
    if args.labelled is not None and args.labelled < 1:
        parser.error(f"--labelled must be at least 1, got {args.labelled}")
    if not args.realval.is_dir():
        parser.exit(0, f"{args.realval} is absent: nothing to measure\n")
    with tempfile.TemporaryDirectory() as tmp:
        parts = halves(args.realval, Path(tmp))
        labelled = halves(args.realval, Path(tmp) / "labelled", args.labelled) if args.labelled else parts
        before, after = Solver(args.model), {}
        counts: dict[str, list[int]] = {}
        for k in range(args.folds):
            run = args.out / f"fold{k}"
            finetune(args.model, labelled[k], run, FinetuneConfig(seed=args.seed), verbose=0)
            tuned = Solver(run / "model")
            for folder in parts[1 - k]:
                n = len(read_labels(folder))
                a, b = evaluate(before, folder)["accuracy"], evaluate(tuned, folder)["accuracy"]
                c = counts.setdefault(folder.name, [0, 0, 0])
                c[0] += n
                c[1] += round(a * n)
                c[2] += round(b * n)
            after[k] = run / "model"
    print(f"| folder | {args.model or 'shipped detector'} | fine-tuned on the other half |")
    print("|---|---|---|")
    for name, (n, a, b) in counts.items():
        print(f"| {name} | {a / n:.1%} ({a} of {n}) | {b / n:.1%} ({b} of {n}) |")
    print(f"\nfine-tuned on {args.labelled or 'half the'} labelled captchas per folder: "
          + ", ".join(str(m) for m in after.values()))


if __name__ == "__main__":
    main()
