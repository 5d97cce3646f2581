"""Two-stage decoding: the detector proposes glyphs, the glyph reader keeps and names them.

The detector's candidates down to proposal_threshold go through its usual NMS; the glyph
reader then reads a crop around each: "no glyph here" drops it (a doubled or partial box), and
otherwise its class probabilities, not the detector's, name the glyph. The alphabet guess runs
on those probabilities too. NumPy only; web/decode.js mirrors it.
"""

from __future__ import annotations

import numpy as np

from kdetect.glyphs.config import GlyphConfig
from kdetect.yolo.alphabet import guess_alphabet
from kdetect.yolo.decode import Glyph, Reading, symbol_mask


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


def refine(proposal: Reading, probs: np.ndarray, gcfg: GlyphConfig, alphabets: tuple[str, ...],
           symbols: str | None = None, guess: bool = True, length: int | None = None,
           detector_probs: np.ndarray | None = None) -> Reading:
    """One image's proposals (left to right) and the glyph reader's probabilities for their crops
    [K, charset + 1] -> the Reading. symbols fix the alphabet; else, with guess, the training
    alphabet the kept glyphs point to is used. With a known answer length, the `length` crops
    likeliest to hold a glyph are kept instead of those under the reject threshold.
    detector_probs [K, C]: the detector's class probabilities for the proposals (see combine)."""
    count = min(len(proposal.glyphs), gcfg.max_glyphs)
    probs = combine(probs[:count], None if detector_probs is None else detector_probs[:count], gcfg.detector_weight)
    if length is None:
        kept = np.flatnonzero(probs[:, -1] < gcfg.reject_threshold)
    else:
        kept = np.sort(np.argsort(probs[:, -1], kind="stable")[:length])
    chars = probs[kept, :-1]
    if symbols is None and guess and alphabets and len(kept):
        symbols = guess_alphabet(chars, alphabets, gcfg.charset)
    chars = chars * symbol_mask(gcfg.charset, symbols)
    best = chars.argmax(-1) if len(kept) else np.zeros(0, int)
    glyphs = tuple(Glyph(gcfg.charset[c], float(p[c]), proposal.glyphs[k].box)
                   for k, c, p in zip(kept.tolist(), best.tolist(), chars))
    confidence = float(np.prod([g.score for g in glyphs])) if glyphs else 0.0
    return Reading("".join(g.char for g in glyphs), confidence, glyphs)
