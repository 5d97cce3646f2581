"""Pseudo-labels for a site's unlabelled captchas: a read is taken as an answer only where the
model is sure and consistent, because a wrong pseudo-label teaches its own mistake.

A read is kept when it agrees with a second read of the same captcha moved a few pixels (a
guess that flips under a small shift is a guess), has a length the site draws, uses only the
site's alphabet, finds as many glyph boxes as it has characters, and its confidence (the
product of the glyph scores) clears a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdetect.readings import Reading
from kdetect.serving.shift_vote import shifted as shifted_batch


@dataclass(frozen=True)
class PseudoFilter:
    lengths: tuple[int, int]  # the site's shortest and longest answer
    alphabet: str
    min_confidence: float = 0.9


def shifted(pixels: np.ndarray, dx: int = 3, dy: int = -2) -> np.ndarray:
    """The captcha [H, W, 3] moved by (dx, dy) pixels, the uncovered edge filled with its paper
    colour, as the shift vote moves it (kdetect/serving/shift_vote.py): the second view a
    pseudo-label must survive."""
    return shifted_batch(pixels[None], dx, dy)[0]


def rejection(first: Reading, second: Reading, rule: PseudoFilter) -> str | None:
    """Why the read `first` (with `second`, the shifted view's) is no pseudo-label; None: keep it."""
    text = first.text
    if text != second.text:
        return "views disagree"
    if not rule.lengths[0] <= len(text) <= rule.lengths[1]:
        return "length"
    if set(text) - set(rule.alphabet):
        return "alphabet"
    if len(first.glyphs) != len(text) or any(g.box is None for g in first.glyphs):
        return "boxes"
    if min(first.confidence, second.confidence) < rule.min_confidence:
        return "confidence"
    return None
