"""Infer a site's KCAPTCHA render config from its labelled captchas.

What the pixels state outright is read off them: the canvas, the JPEG quality (from the
quantisation table, which libjpeg scales from its standard one), the paper colour (the border,
which the wave never reaches) and the ink colour (the darkest pixels: KCAPTCHA paints pure ink
where its glyph is solid). The alphabet and length range come from the labels. What only shows
through the drawing (fluctuation, noise densities, no_spaces, the wave) is found by analysis by
synthesis: captchas are rendered under candidate settings, the same summary statistics are
measured on them and on the site's, and the candidate that matches best wins, one setting at a
time (coordinate descent), so no statistic needs a hand-made calibration.
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from kdetect.data import renderer
from kdetect.errors import DatasetError

# allowed_symbols seen on real KCAPTCHA sites (shared/kcaptcha-algorithm.md), smallest first:
# the labels' characters widen to the smallest of these that holds them, where the labels
# could plausibly have missed the rest.
KNOWN_ALPHABETS = (
    "0123456789",
    "0123456789abcdef",
    "23456789abcdegikpqsvxyz",
    "23456789abcdegkmnpqsuvxyz",
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789abcdefghijklmnopqrstuvwxyz",
)
# A known alphabet is taken only if labels drawn from it would miss its unseen characters at
# least this often: with 150 labels of 5 characters a missing character is all but impossible.
WIDEN_PLAUSIBILITY = 0.05
_STANDARD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=float)
# Where KCAPTCHA scatters noise: rows 10..height-15 (the algorithm's noise step).
NOISE_TOP, NOISE_BOTTOM = 10, 15
# The settings found by synthesis, and the values each may take.
SEARCH = {
    "fluctuation_amplitude": (0, 2, 4, 5, 6, 8, 10, 12, 14),
    "white_noise_density": (0.0, 0.05, 0.1, 0.1667, 0.25, 0.3, 0.4),
    "black_noise_density": (0.0, 0.01, 0.02, 0.0333, 0.05, 0.08, 0.1, 0.13),
    "no_spaces": (False, True),
    "wave": (True, False),
}
FEATURES = ("advance", "wobble", "specks", "holes", "ink")


@dataclass(frozen=True)
class ImageStats:
    """What one captcha shows of its drawing (see image_stats)."""

    paper: tuple[float, float, float]
    ink: tuple[float, float, float]
    features: tuple[float, ...]
    clipped: bool


def jpeg_quality(path: str | Path) -> int | None:
    """The libjpeg quality whose scaled standard table is the file's luminance table; None for
    a file that is not a JPEG."""
    with Image.open(path) as im:
        tables = getattr(im, "quantization", None)
        if im.format != "JPEG" or not tables:
            return None
        table = np.array(tables[0], dtype=float)
    # Zigzag or natural order, the table's values as a multiset fix the quality just as well.
    table, standard = np.sort(table), np.sort(_STANDARD_LUMA)

    def scaled(q: int) -> np.ndarray:
        scale = 5000 / q if q < 50 else 200 - 2 * q
        return np.clip(np.floor((standard * scale + 50) / 100), 1, 255)

    return int(min(range(1, 101), key=lambda q: (np.abs(scaled(q) - table).sum(), -q)))


def paper_and_ink(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A captcha's paper colour (the median of its top and bottom three rows, which the wave
    never reaches) and ink colour (the median of its 1% of pixels farthest from the paper)."""
    a = pixels.astype(np.float32)
    paper = np.median(np.concatenate([a[:3].reshape(-1, 3), a[-3:].reshape(-1, 3)]), axis=0)
    distance = np.linalg.norm(a - paper, axis=2)
    darkest = np.argsort(distance.ravel())[-max(10, distance.size // 100):]
    return paper, np.median(a.reshape(-1, 3)[darkest], axis=0)


def darkness(pixels: np.ndarray, paper: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """0 (paper) .. 1 (ink) per pixel, whatever the colours: the projection on paper -> ink."""
    span = ink - paper
    return np.clip(((pixels.astype(np.float32) - paper) @ span) / max(float(span @ span), 1.0), 0.0, 1.0)


def image_stats(pixels: np.ndarray, length: int) -> ImageStats:
    """Paper and ink colour, and the features synthesis matches, of one RGB captcha with a
    `length`-character answer:
    - advance: text extent per glyph (glyph width, and no_spaces packing them);
    - wobble: how far the ink's centre row wanders column to column (fluctuation, the wave);
    - specks: lone dark pixels per pixel of text area (black noise);
    - holes: light pixels between ink on both sides, per pixel of text area (white noise);
    - ink: the mean darkness of the text area."""
    h, w = pixels.shape[:2]
    paper, ink = paper_and_ink(pixels)
    dark = darkness(pixels, paper, ink)
    mask = dark > 0.5
    counts = mask.sum(axis=0)
    cols = np.flatnonzero(counts >= 2)
    if cols.size < 2:
        return ImageStats(tuple(paper), tuple(ink), (0.0,) * len(FEATURES), False)
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    area = max(1, (x1 - x0) * max(1, h - NOISE_TOP - NOISE_BOTTOM))
    rows = np.arange(h, dtype=np.float32)[:, None]
    inked = counts[x0:x1] >= 3
    centre = (mask[:, x0:x1] * rows).sum(axis=0)[inked] / counts[x0:x1][inked]
    smooth = np.convolve(centre, np.ones(5) / 5, mode="valid") if centre.size >= 5 else centre
    wobble = float(np.std(smooth)) if smooth.size else 0.0
    padded = np.pad(mask, 1)
    neighbours = sum(np.roll(np.roll(padded, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                     if dy or dx)[1:-1, 1:-1]
    specks = float((mask & (neighbours <= 1)).sum()) / area
    light = dark < 0.35
    d = np.pad(dark, 1)
    across = ((d[:-2, 1:-1] > 0.6) & (d[2:, 1:-1] > 0.6)) | ((d[1:-1, :-2] > 0.6) & (d[1:-1, 2:] > 0.6))
    holes = float((light & across).sum()) / area
    features = ((x1 - x0) / max(1, length), wobble, specks * 1000, holes * 1000, float(dark[:, x0:x1].mean()))
    return ImageStats(tuple(paper), tuple(ink), features, x0 <= 1 or x1 >= w - 1)


def measured_features(stats: list[ImageStats]) -> np.ndarray:
    return np.mean([s.features for s in stats], axis=0)


def infer_alphabet(answers: list[str]) -> tuple[str, str]:
    """(alphabet, why): the labels' characters, widened to the smallest known KCAPTCHA alphabet
    that holds them where the labels could well have missed its other characters."""
    seen = "".join(sorted(set("".join(answers))))
    drawn = sum(len(a) for a in answers)
    for known in KNOWN_ALPHABETS:
        if not set(seen) <= set(known):
            continue
        missing = len(known) - len(seen)
        if missing == 0:
            return known, f"the labels use all {len(known)} characters of a known KCAPTCHA alphabet"
        # The chance that `drawn` uniform draws from `known` miss `missing` given characters.
        chance = math.comb(len(known), missing) * (1 - missing / len(known)) ** drawn
        if chance >= WIDEN_PLAUSIBILITY:
            return known, (f"the labels use {len(seen)} of the {len(known)} characters of {known!r}; "
                           f"{drawn} characters would miss the other {missing} with chance {chance:.2f}, so widened")
    return seen, (f"the labels' {len(seen)} characters; no known KCAPTCHA alphabet holds them with the "
                  "rest plausibly unseen")


def _range(values: np.ndarray) -> list[list[int]]:
    lo, hi = np.floor(values.min(axis=0)), np.ceil(values.max(axis=0))
    return [[int(max(0, a)), int(min(255, b))] for a, b in zip(lo, hi)]


def direct_config(images: list[np.ndarray], answers: list[str], paths: list[Path]) -> tuple[dict, list[ImageStats], str]:
    """The settings read straight off the labelled captchas, each one's stats, and why the alphabet is what it is."""
    sizes = Counter((im.shape[1], im.shape[0]) for im in images)
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(4))
        raise DatasetError(f"the labelled captchas come in {len(sizes)} sizes ({shown}): one site draws one "
                           "canvas; keep the images of one site only")
    (width, height), = sizes
    stats = [image_stats(im, len(a)) for im, a in zip(images, answers)]
    alphabet, why = infer_alphabet(answers)
    lengths = [len(a) for a in answers]
    qualities = Counter(q for q in (jpeg_quality(p) for p in paths[:50]) if q is not None)
    config = {
        "allowed_symbols": alphabet,
        "length": [min(lengths), max(lengths)] if min(lengths) != max(lengths) else lengths[0],
        "width": width, "height": height,
        "foreground_color": _range(np.array([s.ink for s in stats])),
        "background_color": _range(np.array([s.paper for s in stats])),
        "format": "jpeg" if qualities else "png",
        # Long answers clipped at the edge: the 1.2.6 engine, which does not redraw them to fit.
        "fit": not any(s.clipped for s in stats),
    }
    if qualities:
        config["jpeg_quality"] = qualities.most_common(1)[0][0]
    if not config["fit"]:
        config["wave_y_amplitude"] = [3.0, 4.09]
    return config, stats, why


def render_features(config: dict, count: int, seed: int) -> np.ndarray:
    """The mean features of `count` captchas rendered under config."""
    with tempfile.TemporaryDirectory(prefix="kdetect-synth-") as scratch:
        path = Path(scratch) / "config.json"
        path.write_text(json.dumps(config))
        stats = []
        for ann in renderer.render(path, seed, 0, count, Path(scratch), track=False):
            with Image.open(Path(scratch) / ann["file"]) as im:
                stats.append(image_stats(np.asarray(im.convert("RGB")), len(ann["text"])))
    return measured_features(stats)


def fit_drawing(config: dict, target: np.ndarray, spread: np.ndarray, count: int = 48, seed: int = 0,
                rounds: int = 2, search: dict | None = None, progress: Callable[[], None] = lambda: None
                ) -> tuple[dict, float]:
    """The settings of `search` (default SEARCH) whose renders' features come nearest the site's
    (distance in units of `spread`): every combination of the on/off settings, and for each a
    coordinate descent over the numeric ones from their middle values (one setting at a time
    takes its best value, the others held). The renders share their seed, so candidates differ
    by their settings alone. Returns the config and its distance."""
    search = SEARCH if search is None else search
    switches = [k for k, values in search.items() if all(isinstance(v, bool) for v in values)]
    numeric = [k for k in search if k not in switches]

    def distance(candidate: dict) -> float:
        progress()
        return float(np.sum(((render_features(candidate, count, seed) - target) / spread) ** 2))

    best, score = None, float("inf")
    for combo in itertools.product(*(search[k] for k in switches)):
        current = {**config, **dict(zip(switches, combo))}
        for key in numeric:
            current[key] = search[key][len(search[key]) // 2]
        current_score = distance(current)
        for _ in range(rounds):
            for key in numeric:
                for value in search[key]:
                    if value == current[key]:
                        continue
                    candidate = {**current, key: value}
                    d = distance(candidate)
                    if d < current_score:
                        current, current_score = candidate, d
        if current_score < score:
            best, score = current, current_score
    return best, score


def feature_spread(stats: list[ImageStats]) -> np.ndarray:
    """How precisely the site's mean features are known: their standard error, floored so one
    near-constant feature cannot dominate."""
    values = np.array([s.features for s in stats])
    error = values.std(axis=0) / math.sqrt(len(stats))
    return np.maximum(error, 0.02 * np.abs(values.mean(axis=0)) + 1e-3)
