"""Anchor boxes by k-means over training box shapes, with 1 - IoU as the distance (YOLOv2/v3)."""

from __future__ import annotations

import numpy as np


def shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes [N, 2] and anchors [K, 2] as if they shared a centre -> [N, K]."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter
    return inter / union


def kmeans_anchors(wh: np.ndarray, k: int, seed: int = 0, iterations: int = 300) -> np.ndarray:
    """k anchors (w, h) for box shapes wh [N, 2], sorted by area (small ones go to the fine scale)."""
    wh = np.asarray(wh, np.float64)
    if len(wh) < k:
        raise ValueError(f"k-means needs at least {k} boxes, got {len(wh)}")
    rng = np.random.default_rng(seed)
    centres = wh[rng.choice(len(wh), k, replace=False)]
    for _ in range(iterations):
        nearest = shape_iou(wh, centres).argmax(axis=1)
        moved = np.array([np.median(wh[nearest == i], axis=0) if np.any(nearest == i) else centres[i]
                          for i in range(k)])
        if np.allclose(moved, centres):
            break
        centres = moved
    return centres[np.argsort(centres.prod(axis=1))]


def mean_best_iou(wh: np.ndarray, anchors: np.ndarray) -> float:
    """How well anchors fit the boxes: the mean over boxes of the best IoU with any anchor."""
    return float(shape_iou(np.asarray(wh, np.float64), np.asarray(anchors, np.float64)).max(axis=1).mean())
