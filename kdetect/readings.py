"""What every reader returns, whatever the model kind: a Reading of Glyphs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Glyph:
    char: str
    score: float
    # x0, y0, x1, y1 in the original image's pixels; None from a model that finds no places
    # (the fixed-length classifier baseline).
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float  # product of the glyph scores: the chance every glyph is right
    glyphs: tuple[Glyph, ...]


def symbol_mask(charset: str, symbols: str | None) -> np.ndarray:
    """[C] 1 for the classes an answer may use, 0 for the rest (all 1 without a restriction)."""
    return np.array([symbols is None or c in symbols for c in charset], np.float32)
