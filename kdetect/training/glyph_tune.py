"""The glyph reader's thresholds (and whether it takes a second look), chosen on held-out
captchas by whole-answer accuracy.

Proposals at a higher threshold are exactly the lower threshold's proposals that score over
it (NMS is greedy from the best score down, so weaker boxes never change which stronger ones
survive): both networks run once, at the lowest threshold, and every pair is a filter.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from kdetect.detector.config import ModelConfig
from kdetect.detector.decode import proposal_batch
from kdetect.glyphs.config import GlyphConfig
from kdetect.glyphs.decode import look_twice, refine
from kdetect.readings import Reading
from kdetect.serving.detector_reader import proposing_config

PROPOSAL_THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25)
REJECT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def stronger(proposal: Reading, probs: np.ndarray, detector_probs: np.ndarray, columns: np.ndarray,
             second: np.ndarray | None, threshold: float) -> tuple[Reading, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The proposals scoring at least threshold, and their rows of the probabilities and columns."""
    keep = [k for k, g in enumerate(proposal.glyphs[:len(probs)]) if g.score >= threshold]
    glyphs = tuple(proposal.glyphs[k] for k in keep)
    return (Reading("", 0.0, glyphs), probs[keep], detector_probs[keep], columns[keep],
            None if second is None else second[keep])


def tune_glyph_thresholds(images: Sequence[np.ndarray], texts: Sequence[str], cfg: ModelConfig, gcfg: GlyphConfig,
                          detect: Callable[[np.ndarray], list[np.ndarray]],
                          read_glyphs: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[GlyphConfig, float]:
    """The (proposal, reject) thresholds, with and without gcfg's second look, that read the most
    answers right -> (config, accuracy); gcfg's own settings win ties. images: uint8 [H, W, 3];
    detect and read_glyphs run the two networks on a batch of same-sized images."""
    lowest = proposing_config(cfg, gcfg, min(PROPOSAL_THRESHOLDS + (gcfg.proposal_threshold,)))
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        by_size.setdefault(image.shape, []).append(i)
    found: dict[int, tuple] = {}
    for (h, w, _), indices in by_size.items():
        for start in range(0, len(indices), 64):
            chunk = indices[start:start + 64]
            batch = np.stack([images[i] for i in chunk])
            proposals = proposal_batch(detect(batch), lowest, [(w, h)] * len(chunk))
            columns, probs, seconds = look_twice(batch, proposals, [(w, h)] * len(chunk), gcfg, read_glyphs, every=True)
            found.update({i: (p, pr, dp, c, s) for i, (p, dp), pr, c, s in zip(chunk, proposals, probs, columns, seconds)})

    def accuracy(candidate: GlyphConfig) -> float:
        right = 0
        for i, text in enumerate(texts):
            proposal, probs, detector_probs, columns, second = stronger(
                *found[i], min(cfg.score_threshold, candidate.proposal_threshold))
            right += refine(proposal, probs, candidate, cfg.alphabets, detector_probs=detector_probs,
                            columns=columns, second=second).text == text
        return right / max(len(texts), 1)

    best, best_accuracy = gcfg, accuracy(gcfg)
    for proposal_threshold, reject_threshold, relook_steps in itertools.product(
            PROPOSAL_THRESHOLDS, REJECT_THRESHOLDS, sorted({0, gcfg.relook_steps})):
        candidate = dataclasses.replace(gcfg, proposal_threshold=proposal_threshold, reject_threshold=reject_threshold,
                                        relook_steps=relook_steps)
        score = accuracy(candidate)
        if score > best_accuracy:
            best, best_accuracy = candidate, score
    return best, best_accuracy
