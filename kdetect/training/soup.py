"""Weight averaging: one detector whose weights are the mean of several ("a model soup").

Detectors continued from one common package stay in the same basin of the loss, and the mean of
their weights is then a network of its own that usually reads better than any of them (Wortsman et
al. 2022, "Model soups"). Detectors trained apart from scratch share no basin and their mean reads
nothing, so average only runs that share an ancestor (`init_from`). Averaging costs nothing at
inference: the result is an ordinary package of the same size and speed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kdetect.detector.config import ModelConfig
from kdetect.errors import ConfigError
from kdetect.fsutil import check_replaceable
from kdetect.package import GLYPH_WEIGHTS, load_package, read_training
from kdetect.training.packaging import alphabets_line, glyph_writer, ingredient_lines, save_package

Weights = list[np.ndarray]


def architecture(cfg: ModelConfig) -> ModelConfig:
    """cfg without its decoding settings: what two packages must share for their weights to mix."""
    return dataclasses.replace(cfg, score_threshold=0.0, nms_iou=0.0, alphabets=())


def mean_weights(ingredients: Sequence[Weights]) -> Weights:
    return [np.mean([w[i] for w in ingredients], axis=0, dtype=np.float64).astype(ingredients[0][i].dtype)
            for i in range(len(ingredients[0]))]


def greedy_soup(ingredients: Sequence[Weights], accuracy: Callable[[Weights], float]) -> tuple[list[int], float]:
    """Wortsman et al.'s greedy recipe: try the ingredients best first and keep each one only if the
    soup with it reads held-out data no worse. -> (indices kept, their soup's accuracy). The best
    single ingredient is always kept, so the soup is never worse than it on that data."""
    alone = [accuracy(w) for w in ingredients]
    order = sorted(range(len(ingredients)), key=lambda i: -alone[i])
    kept, best = [order[0]], alone[order[0]]
    for i in order[1:]:
        trial = accuracy(mean_weights([ingredients[k] for k in kept + [i]]))
        if trial >= best:
            kept, best = kept + [i], trial
    return kept, best


def average_packages(model_dirs: Sequence[str | Path], out_dir: str | Path, val_data: str | None = None,
                     val_images: int = 1000, greedy: bool = False, force: bool = False) -> dict:
    """Write the package whose weights are the mean of model_dirs' (all of them, or with greedy the
    ones greedy_soup keeps on val_data). With val_data the decoding thresholds are re-tuned there
    and the held-out accuracy recorded. -> the new package's training record."""
    if len(model_dirs) < 2:
        raise ConfigError("averaging needs at least two model packages")
    check_replaceable(out_dir, force)
    if greedy and not val_data:
        raise ConfigError("the greedy soup picks its ingredients on held-out data: give val_data (--val DIR)")
    loaded = [load_package(d) for d in model_dirs]
    glyphs = shared_glyph_reader(model_dirs)
    detector, cfg = loaded[0]
    for d, (_, other) in zip(model_dirs[1:], loaded[1:]):
        if architecture(other) != architecture(cfg):
            raise ConfigError(f"{d} and {model_dirs[0]} are different networks (config.json differs beyond the "
                              "thresholds and alphabets); only runs continued from one package can be averaged")
    if any(other.alphabets != cfg.alphabets for _, other in loaded):
        # Runs on different data: the soup has read all of it, each alphabet as often as drawn.
        cfg = dataclasses.replace(cfg, alphabets=sum((other.alphabets for _, other in loaded), ()))
    ingredients = [net.get_weights() for net, _ in loaded]
    record: dict = {}
    kept = list(range(len(ingredients)))
    if val_data:
        from kdetect.training.detector import string_accuracy, tune_thresholds
        from kdetect.training.loop import validation_arrays

        images, texts = validation_arrays(val_data, cfg, val_images)

        def accuracy(weights: Weights) -> float:
            detector.set_weights(weights)
            return string_accuracy(detector, images, texts, cfg)

        if greedy:
            kept, _ = greedy_soup(ingredients, accuracy)
        detector.set_weights(mean_weights([ingredients[k] for k in kept]))
        cfg = tune_thresholds(detector, images, texts, cfg)
        record = {"val_data": val_data, "val_images": len(texts),
                  "val_string_accuracy": string_accuracy(detector, images, texts, cfg)}
    else:
        detector.set_weights(mean_weights(ingredients))
    record = {"averaged_from": [{"package": str(model_dirs[k]), "training": read_training(model_dirs[k])}
                                for k in kept], **record}
    save_package(out_dir, detector, cfg, record, soup_card(cfg, record, len(model_dirs)), force,
                 glyph_writer(model_dirs[0]) if glyphs else None)
    return record


def shared_glyph_reader(model_dirs: Sequence[str | Path]) -> bool:
    """Whether the ingredients share one glyph reader (kept in the soup); False where none has one.
    Different ones, or some without, cannot be averaged with the detectors: refused."""
    files = [Path(d) / GLYPH_WEIGHTS for d in model_dirs]
    if not any(f.is_file() for f in files):
        return False
    if not all(f.is_file() for f in files) or len({f.read_bytes() for f in files}) != 1:
        raise ConfigError("the packages have different glyph readers (or only some have one); average their "
                          "detectors without them, then pair the soup with one: kdetect train-glyphs --detector")
    return True


def soup_card(cfg: ModelConfig, record: dict, offered: int) -> str:
    """The card of a weight average of `offered` packages; record: its training record."""
    parts = record["averaged_from"]
    lines = [f"# kdetect detector (weight average of {len(parts)} packages)\n\n",
             f"YOLOv3-tiny (width x{cfg.width_multiplier}), input {cfg.input_height}x{cfg.input_width}; "
             f"its weights are the mean of {len(parts)} of the {offered} packages offered (kdetect/training/soup.py), "
             "each listed with the runs it continued (training.json holds their full records):\n\n"]
    lines.append(ingredient_lines(parts, 0))
    if "val_string_accuracy" in record:
        lines.append(f"\nHeld-out synthetic validation ({record['val_images']} images, {record['val_data']}): "
                     f"full-string accuracy {record['val_string_accuracy']:.4f}, thresholds tuned there.\n")
    lines.append(alphabets_line(cfg))
    lines.append("Never trained on real captchas.\n")
    return "".join(lines)
