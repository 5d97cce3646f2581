"""Writing model packages and their model cards: every package kdetect writes (trained,
continued, fine-tuned, averaged, compacted, paired with a glyph reader), and every card, is
written here; kdetect/package.py reads them.
"""

from __future__ import annotations

import dataclasses

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kdetect.detector.config import ModelConfig
from kdetect.errors import ConfigError
from kdetect.fsutil import staged_output
from kdetect.package import (CARD, CLASSIFIER_MODEL, CONFIG, GLYPH_CONFIG, GLYPH_WEIGHTS, TRAINING, WEIGHTS,
                             load_glyph_reader, package_kind, read_training)

if TYPE_CHECKING:  # the training configs import this module: their types only, for the signatures
    import keras

    from kdetect.classifier.config import ClassifierConfig
    from kdetect.training.classifier import ClassifierTrainConfig
    from kdetect.training.detector import TrainConfig


def write_package(out_dir: str | Path, config_json: str, training: dict, card: str,
                  write_model: Callable[[Path], None], force: bool = False) -> Path:
    """Write a package to a temporary folder beside out_dir, then swap it in whole, so a crash
    never leaves half a package; write_model(folder) writes the network's file(s) into it. An
    out_dir holding what kdetect did not write is refused unless force (fsutil.replace_dir).
    Every package carries its networks converted for TFLite, so reading it needs no TensorFlow."""
    from kdetect.serving.lite import write_lite_files

    out = Path(out_dir)
    with staged_output(out, force) as tmp:
        write_model(tmp)
        (tmp / CONFIG).write_text(config_json)
        (tmp / TRAINING).write_text(json.dumps(training, indent=2) + "\n")
        (tmp / CARD).write_text(card)
        write_lite_files(tmp)
    return out


def save_package(out_dir: str | Path, detector: keras.Model, cfg: ModelConfig, training: dict, card: str,
                 force: bool = False, extra: Callable[[Path], None] | None = None) -> Path:
    """A detector package; extra(folder), if given, writes more of it (a glyph reader, see glyph_writer)."""

    def write_model(folder: Path) -> None:
        detector.save_weights(str(folder / WEIGHTS))
        if extra is not None:
            extra(folder)

    return write_package(out_dir, cfg.to_json(), training, card, write_model, force)


def glyph_writer(model_dir: str | Path | None, transform: Callable | None = None,
                 input_size: tuple[int, int] | None = None) -> Callable[[Path], None] | None:
    """What writes model_dir's glyph reader (after transform(reader), if given) into another
    package's folder, so the second stage travels with a detector that is continued, compacted or
    averaged; None where model_dir has none. input_size: the new detector's (height, width),
    which the reader's crops are cut from (its weights fit any width; crops keep their size)."""
    glyphs = load_glyph_reader(model_dir) if model_dir else None
    if glyphs is None:
        return None
    reader, gcfg = glyphs
    if input_size is not None:
        gcfg = dataclasses.replace(gcfg, input_height=input_size[0], input_width=input_size[1])
    if transform is not None:
        transform(reader)

    def write(folder: Path) -> None:
        reader.save_weights(str(folder / GLYPH_WEIGHTS))
        (folder / GLYPH_CONFIG).write_text(gcfg.to_json())

    return write


def save_classifier_package(out_dir: str | Path, weights_path: str | Path, cfg: ClassifierConfig, training: dict,
                            card: str, force: bool = False) -> Path:
    """A package of build_classifier(cfg) with the weights of weights_path."""
    from kdetect.classifier.model import build_classifier

    # A fresh model, never compiled: the saved file holds no optimizer, loss or metric to resolve.
    classifier = build_classifier(cfg)
    classifier.load_weights(str(weights_path))
    return write_package(out_dir, cfg.to_json(), training, card, lambda folder: classifier.save(folder / CLASSIFIER_MODEL),
                         force)


def attach_glyph_reader(detector_dir: str | Path, weights: str | Path, glyph_config_json: str, summary: dict,
                        out_dir: str | Path, force: bool = False) -> Path:
    """A two-stage package in out_dir: the detector package's network, config and record, with a
    glyph reader (its weights file and config) beside them."""
    detector_dir = Path(detector_dir)
    if package_kind(detector_dir) != "detector":
        raise ConfigError(f"{detector_dir} is not a detector package: a glyph reader reads a detector's glyphs")

    def write_model(folder: Path) -> None:
        shutil.copyfile(detector_dir / WEIGHTS, folder / WEIGHTS)
        shutil.copyfile(weights, folder / GLYPH_WEIGHTS)
        (folder / GLYPH_CONFIG).write_text(glyph_config_json)

    training = {**(read_training(detector_dir) or {}), "glyph_reader": summary}
    card = (detector_dir / CARD).read_text() if (detector_dir / CARD).is_file() else "# kdetect detector\n\n"
    return write_package(out_dir, (detector_dir / CONFIG).read_text(), training, card + glyph_reader_line(summary),
                         write_model, force)


def compacted_card(model_dir: str | Path) -> str:
    """The card of a compacted copy of model_dir: its own, and what compacting did."""
    return (Path(model_dir) / CARD).read_text() + (
        "- Compacted for shipping (kdetect/training/compact.py): batch norm folded into the convolutions, weights "
        "on TF.js's uint8 grid, so the browser export computes exactly this network.\n")


def glyph_reader_line(summary: dict) -> str:
    """The card line of a second stage added to a detector; summary: the glyph reader's training record."""
    return (f"- Second stage (kdetect/glyphs): a glyph reader trained on {summary.get('train_images', '?'):,} "
            f"synthetic captchas ({summary.get('train_data')}) names each glyph from a crop around it and "
            f"drops doubled boxes; held-out crop accuracy {summary.get('val_crop_accuracy', float('nan')):.4f}.\n")


def detector_card(cfg: ModelConfig, tc: TrainConfig, summary: dict) -> str:
    """A trained detector's card."""
    from kdetect.detector.model import build_detector

    params = build_detector(cfg).count_params()
    labelled = summary.get("train_source") == "labelled"
    if labelled:
        data = (f"- Training data: {summary['train_images']:,} labelled captchas ({tc.train_data}), each glyph's "
                f"box placed by the model it continues (kdetect/training/finetune.py).\n")
        real = ("- Fine-tuned on labelled captchas, validated on held-out ones of the same folders; thresholds "
                + ("tuned on those.\n" if tc.tune_thresholds else "those of the model it continues.\n"))
    else:
        data = (f"- Training data: {summary['train_images']:,} synthetic images from kcaptcha_bbox, preset "
                f"`{summary['train_preset']}`, seed {summary['train_seed']} ({tc.train_data}).\n")
        real = "- Never trained on real captchas. See the README for accuracy on real KCAPTCHA images.\n"
    return (
        "# kdetect detector\n\n"
        f"YOLOv3-tiny (width x{cfg.width_multiplier}, {params:,} parameters), input {cfg.input_height}x"
        f"{cfg.input_width}, strides {cfg.strides}, charset `{cfg.charset}`.\n\n"
        + data +
        f"- Training: batch {tc.batch_size}, up to {tc.epochs} epochs of {tc.steps_per_epoch} steps, AdamW with "
        f"cosine decay from {tc.learning_rate}, augmentation of {float(tc.augment):.0%} of images, seed {tc.seed}"
        + (f", weights averaged (EMA, decay {tc.ema_decay})" if tc.ema_decay else "") + ".\n"
        f"- Held-out {'labelled' if labelled else 'synthetic'} validation ({summary['val_images']} images, "
        f"{tc.val_data}): full-string accuracy {summary['val_string_accuracy']:.4f}.\n"
        + alphabets_line(cfg) + lineage(summary) + real
    )


def classifier_card(cfg: ClassifierConfig, tc: ClassifierTrainConfig, summary: dict) -> str:
    """A trained classifier's card."""
    return (
        "# kdetect classifier baseline\n\n"
        f"Fixed-length classifier: {cfg.backbone} backbone (initial weights: {cfg.weights or 'random'}, "
        f"{summary['parameters']:,} parameters), input {cfg.input_height}x{cfg.input_width}, one softmax over "
        f"`{cfg.charset}` at each of {cfg.length} positions. It reads answers of exactly {cfg.length} "
        "characters and nothing else; the detector reads any length.\n\n"
        f"- Training data: {summary['train_images_of_length']:,} answers of length {cfg.length} out of "
        f"{summary['train_images']:,} synthetic images from kcaptcha_bbox, preset `{summary['train_preset']}`, "
        f"seed {summary['train_seed']} ({tc.train_data}).\n"
        f"- Training: batch {tc.batch_size}, up to {tc.epochs} epochs of {tc.steps_per_epoch} steps, AdamW with "
        f"cosine decay from {tc.learning_rate}, augmentation of {float(tc.augment):.0%} of images, seed {tc.seed}.\n"
        f"- Held-out synthetic validation ({summary['val_images']} images, {tc.val_data}): full-string accuracy "
        f"{summary['val_string_accuracy']:.4f} (per-position {summary['val_position_accuracy']:.4f}).\n"
        "- Never trained on real captchas.\n"
    )


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


def run_line(package: str, t: dict) -> str:
    """A package's own training in one phrase: data, steps and held-out accuracy."""
    if "averaged_from" in t:
        return (f"{package}, the weight average of {len(t['averaged_from'])} packages (kdetect/training/soup.py), "
                f"held-out accuracy {t.get('val_string_accuracy', '?')}")
    images = t.get("train_images")
    # Every kind records its total now (kdetect/training/loop.py); records written before that
    # have only the last session's count, and packages made then still ship: say so.
    epochs = t.get("epochs_run", t.get("epochs_run_this_session", "?"))
    partial = " (its last session only)" if "epochs_run" not in t and "epochs_run_this_session" in t else ""
    # The preset names the distribution, the folder the exact data (a preset may be drawn with
    # other fonts: `kdetect generate --fonts`); give both where known.
    data = f"`{t.get('train_preset') or t.get('train_data', '?')}`"
    if t.get("train_preset") and t.get("train_data"):
        data += f" ({t['train_data']})"
    return (f"{package}: {f'{images:,}' if isinstance(images, int) else '?'} images of "
            f"{data} seed {t.get('train_seed', '?')}, {epochs} epochs of "
            f"{t.get('steps_per_epoch', '?')} steps x {t.get('batch_size', '?')}{partial}, seed {t.get('seed', '?')}, "
            f"held-out accuracy {t.get('val_string_accuracy', '?')}")


def alphabets_line(cfg: ModelConfig) -> str:
    """The model card's line on the alphabets the decoder chooses from (none: empty)."""
    if not cfg.alphabets:
        return ""
    shares = ", ".join(f"`{a}` x{cfg.alphabets.count(a)}" for a in dict.fromkeys(cfg.alphabets))
    return f"- Reads each captcha with the training alphabet its glyphs point to, of: {shares}.\n"


def lineage(summary: dict, depth: int = 0, shown: set[str] | None = None) -> str:
    """Card lines for every ancestor of a run, nearest first; an averaged ancestor lists each of
    its ingredients with their own ancestors, indented, down to the run trained from scratch.
    shown: averaged packages already expanded in this card; they are not listed twice (rounds of
    averaging share their ancestors, and the card would double with every round)."""
    shown = set() if shown is None else shown
    pad, lines, parent = "  " * depth, [], summary.get("init_from")
    while parent:
        t = parent.get("training") or {}
        lines.append(f"{pad}- Continued from {run_line(parent['package'], t)}.\n")
        if "averaged_from" in t:
            if parent["package"] in shown:
                lines.append(f"{pad}  - (its ingredients are listed above)\n")
            else:
                shown.add(parent["package"])
                lines.append(ingredient_lines(t["averaged_from"], depth + 1, shown))
            break
        parent = t.get("init_from")
    return "".join(lines)


def ingredient_lines(parts: list[dict], depth: int, shown: set[str] | None = None) -> str:
    """Card lines for the packages a soup averaged, each followed by its own lineage."""
    pad, shown = "  " * depth, set() if shown is None else shown
    return "".join(f"{pad}- {run_line(p['package'], p.get('training') or {})}.\n"
                   + lineage(p.get("training") or {}, depth + 1, shown) for p in parts)
