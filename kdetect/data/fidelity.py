"""How much our synthetic captchas look like real ones, in two numbers a person can check.

ink fraction: the share of pixels that are ink, i.e. nearer the darkest tone than the paper.
text extent: the width in pixels from the first to the last column holding text; a column
counts when it has at least MIN_INK_PER_COLUMN ink pixels, so lone noise specks do not stretch it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MIN_INK_PER_COLUMN = 4


def ink_mask(image: Image.Image) -> np.ndarray:
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    paper = np.median(gray)
    darkest = np.percentile(gray, 1)
    return gray < (paper + darkest) / 2


def image_stats(image: Image.Image) -> tuple[float, float]:
    """(ink fraction, text extent in px) of one captcha."""
    ink = ink_mask(image)
    columns = np.nonzero(ink.sum(axis=0) >= MIN_INK_PER_COLUMN)[0]
    extent = float(columns[-1] - columns[0] + 1) if len(columns) else 0.0
    return float(ink.mean()), extent


def folder_stats(paths: list[Path]) -> dict[str, float]:
    """Mean ink fraction and mean text extent over images."""
    stats = np.array([image_stats(Image.open(p)) for p in paths])
    return {"images": len(paths), "ink_fraction": float(stats[:, 0].mean()), "text_extent": float(stats[:, 1].mean())}


def compare(ours: dict[str, float], real: dict[str, float]) -> dict[str, float]:
    """Relative difference of each statistic, ours against real (0.1 = 10% off)."""
    return {k: abs(ours[k] - real[k]) / real[k] for k in ("ink_fraction", "text_extent")}
