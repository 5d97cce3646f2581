"""From raw head outputs to an answer: score threshold, NMS across classes, then sort by x
(after guessing the captcha's alphabet, where the model knows its training alphabets).

NumPy only, so it runs the same wherever the network ran; web/ mirrors it in JavaScript.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from kdetect.alphabet import guess_alphabet
from kdetect.detector.config import ModelConfig
from kdetect.readings import Glyph, Reading, symbol_mask


def sigmoid(x: np.ndarray) -> np.ndarray:
    # A logit under about -88 (an adapted model's empty cells) overflows exp in float32 to inf,
    # and the sigmoid is then exactly 0, as in web/decode.js: the overflow is no error here.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


@lru_cache(maxsize=8)
def anchor_table(cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every anchor of every scale, in flat_outputs' order -> its cell (gx, gy) [K, 2], its scale's grid
    (gw, gh) [K, 2] and its size as a fraction of the input (w, h) [K, 2]."""
    cells, grids, sizes = [], [], []
    for s in range(len(cfg.strides)):
        gh, gw = cfg.grid(s)
        gx, gy = np.meshgrid(np.arange(gw), np.arange(gh))
        cells.append(np.repeat(np.stack([gx, gy], -1).reshape(-1, 2), cfg.anchors_per_scale, 0))
        grids.append(np.tile([gw, gh], (gh * gw * cfg.anchors_per_scale, 1)))
        anchors = np.asarray(cfg.scale_anchors(s), np.float32) / np.array([cfg.input_width, cfg.input_height])
        sizes.append(np.tile(anchors, (gh * gw, 1)))
    return np.concatenate(cells), np.concatenate(grids), np.concatenate(sizes)


def flat_outputs(outputs: list[np.ndarray], cfg: ModelConfig) -> np.ndarray:
    """Raw outputs [..., gh, gw, A, 5+C] per scale -> [..., K, 5+C], every anchor in one list."""
    return np.concatenate([raw.reshape(raw.shape[:-4] + (-1, 5 + cfg.num_classes)) for raw in outputs], -2)


def anchor_boxes(rows: np.ndarray, anchor: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Raw rows [..., 5+C] of the anchors numbered `anchor` [...] -> boxes [..., 4] (x0, y0, x1, y1 in 0..1)."""
    cells, grids, sizes = anchor_table(cfg)
    centre = (sigmoid(rows[..., 0:2]) + cells[anchor]) / grids[anchor]
    wh = np.exp(np.clip(rows[..., 2:4], -8, 8)) * sizes[anchor]
    return np.clip(np.concatenate([centre - wh / 2, centre + wh / 2], -1), 0.0, 1.0)


def best_class(objectness: np.ndarray, logits: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """objectness [..., K], logits [..., K, C], mask [C] -> scores [..., K], classes [..., K]:
    each anchor's most likely allowed class and objectness x that class's probability."""
    # The sigmoid is monotonic, so the best class is the best logit: one sigmoid per anchor
    # instead of one per class, most of decoding's cost.
    logits = np.where(mask > 0, logits, -np.inf)
    best = logits.argmax(-1)
    return objectness * sigmoid(np.take_along_axis(logits, best[..., None], -1)[..., 0]), best


def candidates(outputs: list[np.ndarray], cfg: ModelConfig,
               symbols: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs [..., gh, gw, A, 5+C] per scale -> boxes [..., K, 4] (0..1), scores [..., K], classes [..., K],
    every anchor of every scale (decode_batch decodes only those that can score over the threshold).
    symbols: the characters the captcha is known to use (KCAPTCHA's allowed_symbols); others never win."""
    flat = flat_outputs(outputs, cfg)
    boxes = anchor_boxes(flat, np.arange(flat.shape[-2]), cfg)
    return (boxes, *best_class(sigmoid(flat[..., 4]), flat[..., 5:], symbol_mask(cfg.charset, symbols)))


def pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """[K, 4] boxes -> [K, K] intersection over union of every pair."""
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.maximum(hi - lo, 0), -1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression ignoring class: two glyphs never share one place.
    All overlaps are computed at once; the greedy pass then only reads them."""
    order = np.argsort(-scores, kind="stable")
    overlaps = pairwise_iou(boxes[order]) > iou_threshold
    suppressed = np.zeros(len(order), bool)
    keep = []
    for rank, index in enumerate(order.tolist()):
        if not suppressed[rank]:
            keep.append(index)
            suppressed |= overlaps[rank]
    return keep


# With a known answer length, candidates down to this score may fill a glyph the threshold lost.
LENGTH_FLOOR = 0.02


def score_floor(cfg: ModelConfig, length: int | None = None) -> float:
    """The lowest score a glyph may have: the threshold, or with a known length LENGTH_FLOOR too."""
    return cfg.score_threshold if length is None else min(cfg.score_threshold, LENGTH_FLOOR)


def glyph_indices(boxes: np.ndarray, scores: np.ndarray, cfg: ModelConfig, length: int | None = None) -> np.ndarray:
    """One image's candidates [K, 4], [K] -> the indices of its glyphs, left to right: the score
    threshold, then NMS; with a known answer length, the `length` best that NMS keeps down to the
    floor (so a doubled glyph's weaker box goes and a faint glyph comes back)."""
    sure = np.flatnonzero(scores >= score_floor(cfg, length))
    keep = sure[nms(boxes[sure], scores[sure], cfg.nms_iou)][:length]
    return keep[np.argsort((boxes[keep, 0] + boxes[keep, 2]) / 2, kind="stable")]


def reading(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, cfg: ModelConfig,
            image_size: tuple[int, int] | None = None, keep: np.ndarray | None = None) -> Reading:
    """One image's candidates -> Reading: threshold, NMS, then left to right (or the glyph
    indices `keep`, if glyph_indices already gave them)."""
    if keep is None:
        keep = glyph_indices(boxes, scores, cfg)
    w, h = image_size or (cfg.input_width, cfg.input_height)
    pixels = (boxes[keep] * [w, h, w, h]).tolist()
    glyphs = tuple(Glyph(cfg.charset[classes[i]], float(scores[i]), tuple(box)) for i, box in zip(keep, pixels))
    confidence = float(np.prod([g.score for g in glyphs])) if glyphs else 0.0
    return Reading("".join(g.char for g in glyphs), confidence, glyphs)


def candidate_rows(outputs: list[np.ndarray], cfg: ModelConfig,
                   floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[slice]]:
    """Batched outputs -> the anchors whose objectness reaches floor: boxes [M, 4] (0..1),
    objectness [M], class logits [M, C], and each image's slice of them.

    A score is objectness times a class probability, so only those anchors can become glyphs:
    decoding them alone (a few dozen of K per image) is most of decoding's speed."""
    flat = flat_outputs(outputs, cfg)  # [B, K, 5+C]
    objectness = sigmoid(flat[..., 4])  # [B, K]
    image, anchor = np.nonzero(objectness >= floor)  # [M] each, by image then anchor
    rows = flat[image, anchor]  # [M, 5+C]
    bounds = np.searchsorted(image, np.arange(len(flat) + 1))
    images = [slice(bounds[i], bounds[i + 1]) for i in range(len(flat))]
    return anchor_boxes(rows, anchor, cfg), objectness[image, anchor], rows[:, 5:], images


def decode(outputs: list[np.ndarray], cfg: ModelConfig, image_size: tuple[int, int] | None = None,
           symbols: str | None = None, guess_alphabet: bool = True, length: int | None = None) -> Reading:
    """One image's raw outputs -> Reading. image_size (width, height) scales boxes back to the
    original picture; without it boxes are in model-input pixels. See decode_batch for the rest."""
    return decode_batch([o[None] for o in outputs], cfg, [image_size] if image_size else None,
                        symbols, guess_alphabet, length)[0]


def decode_batch(outputs: list[np.ndarray], cfg: ModelConfig, image_sizes: list[tuple[int, int]] | None = None,
                 symbols: str | None = None, guess_alphabet: bool = True, length: int | None = None) -> list[Reading]:
    """Batched outputs [B, gh, gw, A, 5+C] per scale -> one Reading per image.

    symbols: the characters the captchas are known to use; others never win. Without them, and
    when the model knows its training alphabets, each captcha is read with the alphabet its
    glyphs point to (kdetect/alphabet.py) unless guess_alphabet is False. length: the answer length, if
    known (see glyph_indices)."""
    floor = score_floor(cfg, length)
    boxes, objectness, logits, images = candidate_rows(outputs, cfg, floor)
    scores, classes = best_class(objectness, logits, symbol_mask(cfg.charset, symbols))
    readings = []
    for i, own in enumerate(images):
        box, score, cls = boxes[own], scores[own], classes[own]
        keep = glyph_indices(box, score, cfg, length)
        if symbols is None and guess_alphabet and cfg.alphabets:
            allowed = symbol_mask(cfg.charset, alphabet_of(logits[own][keep], cfg))
            # Where every candidate over the floor already reads inside the alphabet, the
            # restricted pass would find the same glyphs: only scores under it can drop.
            if not allowed[cls[score >= floor]].all():
                score, cls = best_class(objectness[own], logits[own], allowed)
                keep = glyph_indices(box, score, cfg, length)
        readings.append(reading(box, score, cls, cfg, image_sizes[i] if image_sizes else None, keep))
    return readings


def proposal_batch(outputs: list[np.ndarray], cfg: ModelConfig,
                   image_sizes: list[tuple[int, int]] | None = None) -> list[tuple[Reading, np.ndarray]]:
    """Batched outputs -> per image its glyphs as the detector finds them (no alphabet guess) and
    their class probabilities [K, C] (the second stage weighs its own reading against them)."""
    boxes, objectness, logits, images = candidate_rows(outputs, cfg, cfg.score_threshold)
    scores, classes = best_class(objectness, logits, symbol_mask(cfg.charset, None))
    found = []
    for i, own in enumerate(images):
        keep = glyph_indices(boxes[own], scores[own], cfg)
        glyphs = reading(boxes[own], scores[own], classes[own], cfg, image_sizes[i] if image_sizes else None, keep)
        found.append((glyphs, sigmoid(logits[own][keep])))
    return found


def alphabet_of(glyph_logits: np.ndarray, cfg: ModelConfig) -> str | None:
    """[K, C] class logits of one captcha's glyphs -> the training alphabet they most likely came from."""
    return guess_alphabet(sigmoid(glyph_logits), cfg.alphabets, cfg.charset)
