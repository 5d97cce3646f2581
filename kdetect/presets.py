"""The presets that stand for real engines, and where the real captchas measured against them live.

Every accuracy table (demo, compare, tools/accuracy_report.py, bench) goes through the presets
in this order; the render options themselves are the JSON files in configs/.
"""

from __future__ import annotations

import os
from pathlib import Path

# Drawn like one real engine each; train-mix, a mixture of them, is for training only.
ENGINE_PRESETS = ("gnuboard5", "l2", "varlen", "kcaptcha21")
TRAINING_PRESET = "train-mix"


def realval_dir() -> Path:
    """Real captchas, one labelled folder per engine preset (`labels.tsv` and images):
    $KDETECT_REALVAL, else shared/realval beside the checkout. Where it is absent, what
    measures on it skips it."""
    chosen = os.environ.get("KDETECT_REALVAL")
    return Path(chosen) if chosen else Path(__file__).resolve().parents[2] / "shared" / "realval"
