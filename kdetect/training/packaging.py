"""Writing model packages: every package kdetect writes (trained, continued, fine-tuned,
averaged, compacted, paired with a glyph reader) is written here, with the card lines they
share; each kind's own card is written beside its trainer, which imports this module.
kdetect/package.py reads packages.
"""

from __future__ import annotations

import dataclasses

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kdetect.classifier.config import ClassifierConfig
from kdetect.detector.config import ModelConfig
from kdetect.errors import ConfigError
from kdetect.fsutil import staged_output
from kdetect.package import (CARD, CLASSIFIER_MODEL, CONFIG, GLYPH_CONFIG, GLYPH_WEIGHTS, TRAINING, WEIGHTS,
                             load_glyph_reader, package_kind, read_training)

if TYPE_CHECKING:  # Keras loads only where a package is written, not where this module is imported
    import keras


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


# How the card lines a glyph reader adds begin (glyph_reader_line, vote_line).
READER_LINES = ("- Second stage (kdetect/glyphs)", "- Shift vote (")


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
    # A detector that had a reader already (a release kept while its reader is retrained) loses
    # the old reader's lines for the new one's.
    card = "".join(line for line in card.splitlines(keepends=True) if not line.startswith(READER_LINES))
    lines = glyph_reader_line(summary) + vote_line(json.loads(glyph_config_json))
    return write_package(out_dir, (detector_dir / CONFIG).read_text(), training, card + lines, write_model, force)


def glyph_reader_line(summary: dict) -> str:
    """The card line of a second stage added to a detector; summary: the glyph reader's training record."""
    return (f"- Second stage (kdetect/glyphs): a glyph reader trained on {summary.get('train_images', '?'):,} "
            f"synthetic captchas ({summary.get('train_data')}) names each glyph from a crop around it and "
            f"drops doubled boxes; held-out crop accuracy {summary.get('val_crop_accuracy', float('nan')):.4f}.\n")


def vote_line(glyph_config: dict) -> str:
    """The card line of the shift vote a glyph config asks for (kdetect/serving/shift_vote.py), if any."""
    shifts = glyph_config.get("vote_shifts") or []
    if not shifts:
        return ""
    settle = glyph_config.get("vote_settle_after", 0)
    where = ", ".join(f"({dx}, {dy})" for dx, dy in shifts)
    staged = f"; past the first {settle}, only where the readings so far disagree" if settle else ""
    return (f"- Shift vote (kdetect/serving/shift_vote.py): a captcha read with confidence under "
            f"{glyph_config.get('vote_below')} is read again moved by {where} input pixels{staged}; "
            f"the answer most readings give wins.\n")


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
