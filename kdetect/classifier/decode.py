"""The classifier's probabilities read as an answer: NumPy only, shared by its reader and its training."""

from __future__ import annotations

import numpy as np

from kdetect.readings import Glyph, Reading, symbol_mask


def decode_probabilities(probs: np.ndarray, charset: str, symbols: str | None = None) -> Reading:
    """One image's probabilities [length, classes] -> the most likely allowed char at each position."""
    probs = probs * symbol_mask(charset, symbols)
    ids, scores = probs.argmax(-1), probs.max(-1)
    glyphs = tuple(Glyph(charset[i], float(s)) for i, s in zip(ids, scores))
    return Reading("".join(g.char for g in glyphs), float(np.prod(scores)), glyphs)
