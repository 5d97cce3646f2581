"""The shift vote: an unsure captcha is read again moved a few pixels, and the answer most
readings agree on wins.

Why: the detector sees the image through a grid of 8- and 16-pixel cells, and where a packed
or thin glyph falls on that grid decides whether it is found. Moved by 2-4 pixels the same
captcha falls on the grid differently, and its readings err in different places, so the
answer most of them give is more often right than any one (docs/experiments.md, 2026-12-04).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from kdetect.readings import Glyph, Reading


def pixel_shift(shift: tuple[int, int], size: tuple[int, int], input_size: tuple[int, int]) -> tuple[int, int]:
    """A shift given in the network input's pixels -> the same shift in an image of size
    (width, height), for a network input of input_size (width, height); halves round up, as
    web/decode.js rounds them."""
    (dx, dy), (w, h), (iw, ih) = shift, size, input_size
    return int(np.floor(dx * w / iw + 0.5)), int(np.floor(dy * h / ih + 0.5))


def shifted(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """uint8 images [B, H, W, 3] with their content moved dx pixels right and dy down; the
    uncovered edge takes each image's paper colour (the per-channel median of its top and bottom
    rows, where a captcha has no text)."""
    h, w = images.shape[1:3]
    paper = np.median(np.concatenate([images[:, 0], images[:, -1]], axis=1), axis=1).astype(np.uint8)
    out = np.broadcast_to(paper[:, None, None, :], images.shape).copy()
    if abs(dx) < w and abs(dy) < h:
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def moved_back(reading: Reading, dx: int, dy: int, size: tuple[int, int]) -> Reading:
    """A reading of an image shifted by (dx, dy), with its boxes in the original image's pixels."""
    w, h = size

    def back(box):
        if box is None:
            return None
        x0, y0, x1, y1 = box
        return (min(max(x0 - dx, 0.0), w), min(max(y0 - dy, 0.0), h), min(max(x1 - dx, 0.0), w), min(max(y1 - dy, 0.0), h))

    return dataclasses.replace(reading, glyphs=tuple(Glyph(g.char, g.score, back(g.box)) for g in reading.glyphs))


def vote(readings: Sequence[Reading]) -> Reading:
    """The reading whose text most readings give; a tie goes to the text read first (readings
    come unshifted first), so the vote never depends on how two runtimes round a score."""
    counts: dict[str, int] = {}
    for r in readings:
        counts[r.text] = counts.get(r.text, 0) + 1
    best = max(counts.values())
    return next(r for r in readings if counts[r.text] == best)


def read_with_votes(images: np.ndarray, size: tuple[int, int], input_size: tuple[int, int],
                    read: Callable[[np.ndarray], list[Reading]], shifts: Sequence[tuple[int, int]],
                    below: float, settle_after: int = 0) -> list[Reading]:
    """Read images [B, H, W, 3] of one size with `read`; those read with a confidence under
    `below` are read again at the shifts (network input pixels) and get the voted reading.
    settle_after > 0: a captcha whose readings all agree after that many shifts is settled
    there, and only the others are read at the remaining shifts (most unsure captchas are read
    right, and this spares them most of the cost)."""
    readings = read(images)
    unsure = [i for i, r in enumerate(readings) if r.confidence < below]
    ballots = {i: [readings[i]] for i in unsure}
    for n, shift in enumerate(shifts):
        if n and n == settle_after:
            unsure = [i for i in unsure if len({r.text for r in ballots[i]}) > 1]
        if not unsure:
            break
        dx, dy = pixel_shift(shift, size, input_size)
        for i, r in zip(unsure, read(shifted(images[unsure], dx, dy))):
            ballots[i].append(moved_back(r, dx, dy, size))
    for i, ballot in ballots.items():
        readings[i] = vote(ballot)
    return readings
