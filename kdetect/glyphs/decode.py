"""Two-stage decoding: the detector proposes glyphs, the glyph reader keeps and names them.

The detector's candidates down to proposal_threshold go through its usual NMS; the glyph
reader then reads a crop around each: "no glyph here" drops it (a doubled or partial box), and
otherwise its class probabilities, weighed with the detector's, name the glyph. A dropped
proposal gets a second look a few columns either side (the detector's centre may be off), and
comes back if a glyph is there that no kept glyph already stands on. The alphabet guess runs
on the kept glyphs' probabilities. NumPy only; web/decode.js mirrors it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kdetect.alphabet import guess_alphabet
from kdetect.glyphs.config import GlyphConfig
from kdetect.readings import Glyph, Reading, symbol_mask


def crop_centres(proposals: list[Reading], image_sizes: list[tuple[int, int]], gcfg: GlyphConfig) -> np.ndarray:
    """Each proposal's box centre as a column of the detector's input -> int32 [B, K], K the most
    proposals of any image (at least 1; at most max_glyphs). Where an image has fewer, the
    centres are 0: those crops are read and ignored."""
    most = max([len(r.glyphs) for r in proposals] + [1])
    centres = np.zeros((len(proposals), min(most, gcfg.max_glyphs)), np.int32)
    for i, (reading, (width, _)) in enumerate(zip(proposals, image_sizes)):
        for k, glyph in enumerate(reading.glyphs[:gcfg.max_glyphs]):
            centres[i, k] = int(np.floor((glyph.box[0] + glyph.box[2]) / 2 * gcfg.input_width / width + 0.5))
    return centres


def combine(probs: np.ndarray, detector_probs: np.ndarray | None, weight: float) -> np.ndarray:
    """The reader's probabilities [K, C + 1] with the char part weighed by the detector's class
    probabilities [K, C] ** weight (each row normalised first), kept summing to 1 - p(no glyph)."""
    if detector_probs is None or weight == 0 or len(probs) == 0:
        return probs
    detector = detector_probs / np.maximum(detector_probs.sum(-1, keepdims=True), 1e-9)
    chars = probs[:, :-1] * detector ** weight
    chars = chars / np.maximum(chars.sum(-1, keepdims=True), 1e-12) * (1.0 - probs[:, -1:])
    return np.concatenate([chars, probs[:, -1:]], -1)


def first_look(probs: np.ndarray, detector_probs: np.ndarray | None, count: int,
               gcfg: GlyphConfig) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` crops' readings [K, C + 1] (combined with the detector's) -> (those
    combined probabilities, the indices the reject threshold keeps)."""
    probs = combine(probs[:count], None if detector_probs is None else detector_probs[:count], gcfg.detector_weight)
    return probs, np.flatnonzero(probs[:, -1] < gcfg.reject_threshold)


def dropped(proposal: Reading, probs: np.ndarray, gcfg: GlyphConfig, detector_probs: np.ndarray | None = None) -> np.ndarray:
    """Indices of the proposals the first look drops: the ones a second look reads again."""
    count = min(len(proposal.glyphs), gcfg.max_glyphs)
    _, kept = first_look(probs, detector_probs, count, gcfg)
    return np.setdiff1d(np.arange(count), kept)


def relook_centres(centres: np.ndarray, drops: list[np.ndarray], gcfg: GlyphConfig) -> tuple[np.ndarray, list[np.ndarray]]:
    """First-look columns [B, K] and each image's dropped proposals -> the second look's columns
    [B, M] (M at least 1) and, per image, the slot k * L + j each of its columns stands for
    (proposal k, offset j of gcfg.relook_offsets, L of them). Columns off the input are read
    clamped and never used."""
    offsets = np.asarray(gcfg.relook_offsets, np.int64)
    slots = [(d[:, None] * len(offsets) + np.arange(len(offsets))).reshape(-1) for d in drops]
    columns = np.zeros((len(drops), max([len(s) for s in slots] + [1])), np.int32)
    for i, s in enumerate(slots):
        columns[i, :len(s)] = np.clip(centres[i, s // len(offsets)] + offsets[s % len(offsets)], 0, gcfg.input_width - 1)
    return columns, slots


def second_looks(probs: np.ndarray, slots: list[np.ndarray], count: int, gcfg: GlyphConfig) -> list[np.ndarray]:
    """The second look's readings [B, M, C + 1] -> per image [count, L, C + 1], zeros where unread."""
    looks = []
    for row, s in zip(probs, slots):
        full = np.zeros((count * len(gcfg.relook_offsets), probs.shape[-1]), probs.dtype)
        full[s] = row[:len(s)]
        looks.append(full.reshape(count, len(gcfg.relook_offsets), -1))
    return looks


def relook(probs: np.ndarray, kept: np.ndarray, columns: np.ndarray, second: np.ndarray,
           detector_probs: np.ndarray | None, gcfg: GlyphConfig) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Second looks at the dropped proposals, left to right -> (the kept proposals, the combined
    probabilities with second looks in place, the column each proposal's glyph was read at). A
    glyph found by a second look keeps its proposal's box."""
    probs = probs.copy()
    centres = np.asarray(columns, float).copy()
    placed = [int(k) for k in kept]
    for k in range(len(probs)):
        if k in placed:
            continue
        for j, offset in enumerate(gcfg.relook_offsets):
            column = int(columns[k]) + offset
            if not 0 <= column < gcfg.input_width:
                continue
            row = combine(second[k, j][None], None if detector_probs is None else detector_probs[k][None],
                          gcfg.detector_weight)[0]
            if row[-1] < gcfg.reject_threshold:
                # A glyph there that a kept one already stands on means this box was doubled.
                if all(abs(column - centres[c]) >= gcfg.relook_separation for c in placed):
                    placed.append(k)
                    probs[k], centres[k] = row, column
                break
    return placed, probs, centres


def refine(proposal: Reading, probs: np.ndarray, gcfg: GlyphConfig, alphabets: tuple[str, ...],
           symbols: str | None = None, guess: bool = True, length: int | None = None,
           detector_probs: np.ndarray | None = None, columns: np.ndarray | None = None,
           second: np.ndarray | None = None) -> Reading:
    """One image's proposals (left to right) and the glyph reader's probabilities for their crops
    [K, C + 1] -> the Reading. symbols fix the alphabet; else, with guess, the training
    alphabet the kept glyphs point to is used. With a known answer length, the `length` crops
    likeliest to hold a glyph are kept instead of those under the reject threshold.
    detector_probs [K, C]: the detector's class probabilities for the proposals (see combine).
    columns [K] (the first look's) and second [K, L, C + 1] (second_looks): the second look at
    dropped proposals, without a known length; columns also order the glyphs, where a second
    look moved one."""
    count = min(len(proposal.glyphs), gcfg.max_glyphs)
    probs, kept = first_look(probs, detector_probs, count, gcfg)
    centres = None if columns is None else np.asarray(columns[:count], float)
    if length is not None:
        order = np.argsort(probs[:, -1], kind="stable").tolist()
        kept = np.sort(np.asarray(order[:length], int))
    elif second is not None and columns is not None and gcfg.relook_steps:
        placed, probs, centres = relook(probs, kept, columns[:count], second, detector_probs, gcfg)
        kept = np.asarray(placed, int)
    if centres is not None:  # left to right by where each glyph was read (else kept is in proposal order)
        kept = np.asarray(sorted(kept.tolist(), key=lambda k: (centres[k], k)), int)
    chars = probs[kept, :-1]
    if symbols is None and guess and alphabets and len(kept):
        symbols = guess_alphabet(chars, alphabets, gcfg.charset)
    chars = chars * symbol_mask(gcfg.charset, symbols)
    best = chars.argmax(-1) if len(kept) else np.zeros(0, int)
    glyphs = tuple(Glyph(gcfg.charset[c], float(p[c]), proposal.glyphs[k].box)
                   for k, c, p in zip(kept.tolist(), best.tolist(), chars))
    confidence = float(np.prod([g.score for g in glyphs])) if glyphs else 0.0
    return Reading("".join(g.char for g in glyphs), confidence, glyphs)


def look_twice(images: np.ndarray, found: list[tuple[Reading, np.ndarray]], image_sizes: list[tuple[int, int]],
               gcfg: GlyphConfig, read_glyphs: Callable[[np.ndarray, np.ndarray], np.ndarray],
               length: int | None = None, every: bool = False) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """Run the glyph reader on a batch's proposals (proposal_batch's (Reading, detector class
    probabilities) per image): the first look at every proposal, then, without a known length,
    the second look at those the first drops (with every, at all of them: threshold tuning
    needs them all). -> (first-look columns [B, K], their readings [B, K, C + 1], per image
    second_looks' [K, L, C + 1] or None)."""
    centres = crop_centres([p for p, _ in found], image_sizes, gcfg)
    probs = read_glyphs(images, centres)
    seconds: list[np.ndarray | None] = [None] * len(found)
    if length is None and gcfg.relook_steps:
        drops = [np.arange(min(len(p.glyphs), gcfg.max_glyphs)) if every else dropped(p, pr, gcfg, dp)
                 for (p, dp), pr in zip(found, probs)]
        if any(len(d) for d in drops):
            columns, slots = relook_centres(centres, drops, gcfg)
            seconds = second_looks(read_glyphs(images, columns), slots, centres.shape[1], gcfg)
    return centres, probs, seconds
