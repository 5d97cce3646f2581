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

    def to_json(self) -> dict:
        """The reading as JSON values, as `kdetect solve --json` prints it and a server answers:
        scores to 4 decimals and boxes to 0.1 px, finer than either means; a box is null from a
        model that finds no places."""
        return {"text": self.text, "confidence": round(self.confidence, 4),
                "glyphs": [{"char": g.char, "score": round(g.score, 4),
                            "box": None if g.box is None else [round(v, 1) for v in g.box]} for g in self.glyphs]}


def symbol_mask(charset: str, symbols: str | None) -> np.ndarray:
    """[C] 1 for the classes an answer may use, 0 for the rest (all 1 without a restriction)."""
    return np.array([symbols is None or c in symbols for c in charset], np.float32)
