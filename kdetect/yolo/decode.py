"""From raw head outputs to an answer: score threshold, NMS across classes, then sort by x.

NumPy only, so it runs the same wherever the network ran; web/ mirrors it in JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdetect.yolo.config import ModelConfig


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


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def symbol_mask(charset: str, symbols: str | None) -> np.ndarray:
    """[C] 1 for the classes an answer may use, 0 for the rest (all 1 without a restriction)."""
    return np.array([symbols is None or c in symbols for c in charset], np.float32)


def candidates(outputs: list[np.ndarray], cfg: ModelConfig,
               symbols: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs [..., gh, gw, A, 5+C] per scale -> boxes [..., K, 4] (0..1), scores [..., K], classes [..., K].
    A leading batch axis is optional: a whole batch in one pass saves NumPy's per-call overhead.
    symbols: the characters the captcha is known to use (KCAPTCHA's allowed_symbols); others never win."""
    mask = symbol_mask(cfg.charset, symbols)
    boxes, scores, classes = [], [], []
    for s, raw in enumerate(outputs):
        lead = raw.shape[:-4]
        gh, gw = cfg.grid(s)
        gx, gy = np.meshgrid(np.arange(gw), np.arange(gh))
        cells = np.stack([gx, gy], -1)[:, :, None, :]  # [gh, gw, 1, 2]
        anchors = np.asarray(cfg.scale_anchors(s), np.float32) / [cfg.input_width, cfg.input_height]
        centre = (sigmoid(raw[..., 0:2]) + cells) / [gw, gh]
        wh = np.exp(np.clip(raw[..., 2:4], -8, 8)) * anchors
        # The sigmoid is monotonic, so the best class is the best logit: one sigmoid per anchor
        # instead of one per class, most of decoding's cost.
        logits = np.where(mask > 0, raw[..., 5:], -np.inf)
        best = logits.argmax(-1)
        score = sigmoid(raw[..., 4]) * sigmoid(np.take_along_axis(logits, best[..., None], -1)[..., 0])
        box = np.clip(np.concatenate([centre - wh / 2, centre + wh / 2], -1), 0.0, 1.0)
        boxes.append(box.reshape(lead + (-1, 4)))
        scores.append(score.reshape(lead + (-1,)))
        classes.append(best.reshape(lead + (-1,)))
    return np.concatenate(boxes, -2), np.concatenate(scores, -1), np.concatenate(classes, -1)


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


def reading(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, cfg: ModelConfig,
            image_size: tuple[int, int] | None = None) -> Reading:
    """One image's candidates -> Reading: threshold, NMS, then left to right."""
    sure = scores >= cfg.score_threshold
    boxes, scores, classes = boxes[sure], scores[sure], classes[sure]
    keep = nms(boxes, scores, cfg.nms_iou)
    keep.sort(key=lambda i: (boxes[i, 0] + boxes[i, 2]) / 2)
    w, h = image_size or (cfg.input_width, cfg.input_height)
    pixels = (boxes[keep] * [w, h, w, h]).tolist()
    glyphs = tuple(Glyph(cfg.charset[classes[i]], float(scores[i]), tuple(box)) for i, box in zip(keep, pixels))
    confidence = float(np.prod([g.score for g in glyphs])) if glyphs else 0.0
    return Reading("".join(g.char for g in glyphs), confidence, glyphs)


def decode(outputs: list[np.ndarray], cfg: ModelConfig, image_size: tuple[int, int] | None = None,
           symbols: str | None = None) -> Reading:
    """One image's raw outputs -> Reading. image_size (width, height) scales boxes back to the
    original picture; without it boxes are in model-input pixels."""
    return reading(*candidates(outputs, cfg, symbols), cfg, image_size)


def decode_batch(outputs: list[np.ndarray], cfg: ModelConfig, image_sizes: list[tuple[int, int]] | None = None,
                 symbols: str | None = None) -> list[Reading]:
    """Batched outputs [B, gh, gw, A, 5+C] per scale -> one Reading per image."""
    boxes, scores, classes = candidates(outputs, cfg, symbols)
    return [reading(boxes[i], scores[i], classes[i], cfg, image_sizes[i] if image_sizes else None)
            for i in range(len(boxes))]
