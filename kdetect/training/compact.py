"""Compact a detector package for shipping: batch norm folded into the convolutions, then every
weight snapped to the 8-bit grid that TF.js's uint8 weight quantisation uses.

Why: the browser runs the TF.js export with uint8 weights (a quarter of the size), and a float
package differs from it by the quantisation error, enough to flip near-tied readings (9% of the
answers of an early checkpoint differed between the page and `solve`). Snapped weights quantise
to themselves, so Python and the browser compute the same network. The converter folds batch
norm before it quantises, so the folding has to happen here first for that to hold.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from kdetect.detector.config import ModelConfig
from kdetect.package import CARD, load_package, read_training
from kdetect.training.packaging import glyph_writer, save_package

LEVELS = 255  # uint8


def uint8_grid(weights: np.ndarray) -> np.ndarray:
    """weights snapped to a per-tensor affine 8-bit grid: 256 evenly spaced values spanning
    min..max, shifted so that 0 is one of them when the range holds 0 (a zero weight stays zero)."""
    lo, hi = float(weights.min()), float(weights.max())
    if lo == hi:
        return weights.copy()
    step = (hi - lo) / LEVELS
    if lo <= 0.0 <= hi:
        lo = -np.round(-lo / step) * step
        hi = lo + LEVELS * step
    codes = np.round((np.clip(weights.astype(np.float64), lo, hi) - lo) / step)
    return (codes * step + lo).astype(weights.dtype)


def fold_batch_norm(detector, cfg: ModelConfig):
    """-> (the same network without batch norm layers, its config): each conv's kernel scaled by
    gamma / sqrt(var + eps) and given the bias beta - mean * that scale."""
    from kdetect.detector.model import build_detector

    folded_cfg = dataclasses.replace(cfg, batch_norm=False)
    folded = build_detector(folded_cfg)
    for layer in folded.layers:
        if not layer.weights:
            continue
        source = detector.get_layer(layer.name)
        if layer.name.endswith("_conv"):
            bn = detector.get_layer(layer.name[:-len("_conv")] + "_bn")
            gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
            scale = gamma / np.sqrt(var + bn.epsilon)
            kernel = np.asarray(source.get_weights()[0], np.float64)
            layer.set_weights([(kernel * scale).astype(np.float32), (beta - mean * scale).astype(np.float32)])
        else:
            layer.set_weights(source.get_weights())
    return folded, folded_cfg


def snap_weights(model) -> None:
    """Every weight of model onto its uint8 grid, in place."""
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([uint8_grid(np.asarray(w)) for w in layer.get_weights()])


def compact_package(model_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write the compacted copy of a detector package to out_dir (replaced whole, if kdetect wrote it or force)."""
    detector, cfg = load_package(model_dir)
    if cfg.batch_norm:
        detector, cfg = fold_batch_norm(detector, cfg)
    snap_weights(detector)
    training = read_training(model_dir) or {}
    training["compacted_from"] = str(model_dir)
    card = compacted_card(model_dir)
    # A glyph reader goes onto the same grid: the browser runs it from uint8 weights too.
    return save_package(out_dir, detector, cfg, training, card, force, glyph_writer(model_dir, snap_weights))


def compacted_card(model_dir: str | Path) -> str:
    """The card of a compacted copy of model_dir: its own, and what compacting did (once: a
    package made from a compacted release says so already)."""
    card = (Path(model_dir) / CARD).read_text()
    line = ("- Compacted for shipping (kdetect/training/compact.py): batch norm folded into the convolutions, weights "
            "on TF.js's uint8 grid, so the browser export computes exactly this network.\n")
    return card if line in card else card + line
