"""Fine-tuning a detector on labelled captchas from a real site, where boxes come from the detector.

A site gives only image and answer. Where the detector finds as many glyphs as the answer has
characters, the answer's characters, in order, go on its boxes sorted by x: its reading may be
wrong while its count and places are right, and those are the images fine-tuning must fix. The
rest serve only to validate. Both become ordinary TFRecord datasets, so training is `kdetect
train`'s own, continued from the model that placed the boxes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from kdetect.errors import ConfigError, DatasetError, InvalidImageError
from kdetect.fsutil import check_replaceable, staged_output, write_atomic
from kdetect.images import load_image
from kdetect.readings import Reading
from kdetect.serving.evaluate import foreign_answers, read_labels

SHARD = "shard-00000-of-00001.tfrecord"


@dataclass(frozen=True)
class FinetuneConfig:
    """How a fine-tune runs; the defaults suit a few hundred labelled images on a CPU."""

    val_fraction: float = 0.2  # labelled images held out to pick the best epoch
    epochs: int = 3
    steps_per_epoch: int = 100
    batch_size: int = 16
    learning_rate: float = 5e-5
    augment: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1, not {self.val_fraction}")
        if min(self.epochs, self.steps_per_epoch, self.batch_size) < 1:
            raise ConfigError(f"epochs, steps per epoch and batch size must be at least 1, not {self.epochs}, "
                              f"{self.steps_per_epoch} and {self.batch_size}")


def pseudo_boxes(reading: Reading, answer: str) -> list[list] | None:
    """[x0, y0, x1, y1, char] per character of the answer on the reading's glyph boxes in x order;
    None where the counts differ (no way to tell which glyph is missing or extra)."""
    glyphs = [g for g in reading.glyphs if g.box is not None]
    if len(glyphs) != len(answer) or len(glyphs) != len(reading.glyphs):
        return None
    if any(g.box[2] <= g.box[0] or g.box[3] <= g.box[1] for g in glyphs):
        return None
    ordered = sorted(glyphs, key=lambda g: g.box[0] + g.box[2])
    return [[*map(float, g.box), ch] for g, ch in zip(ordered, answer)]


def split_items(items: list[tuple[Path, str]], val_fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): a seeded shuffle, at least one image on each side."""
    if len(items) < 2:
        raise DatasetError(f"fine-tuning needs at least 2 labelled images (one to train, one to validate), "
                           f"got {len(items)}")
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    n_val = min(len(items) - 1, max(1, round(len(items) * val_fraction)))
    return shuffled[n_val:], shuffled[:n_val]


def labelled_items(folders: list[str | Path]) -> tuple[list[tuple[Path, str]], tuple[str, ...]]:
    """Every (image, answer) of the folders (each with a labels.tsv), and each folder's alphabet:
    the characters its answers use, one entry per folder (a site draws from one)."""
    items, alphabets = [], []
    for folder in folders:
        rows = read_labels(folder)
        items += rows
        alphabets.append("".join(sorted(set("".join(a for _, a in rows)))))
    return items, tuple(alphabets)


def one_length(items: list[tuple[Path, str]]) -> int | None:
    """The answer length every label shares (a site's, which decoding then uses), else None."""
    lengths = {len(answer) for _, answer in items}
    return lengths.pop() if len(lengths) == 1 else None


def write_dataset(reader, items: list[tuple[Path, str]], out_dir: str | Path, alphabets: tuple[str, ...],
                  boxes_required: bool, seed: int, force: bool = False) -> dict:
    """A one-shard TFRecord dataset of labelled images, boxes placed by `reader` (see pseudo_boxes).
    boxes_required: leave out the images that got no boxes (for training); else keep them with
    none (for validation, which reads only image and answer). Returns its manifest."""
    import tensorflow as tf

    from kdetect.data.tfrecord import MANIFEST, encode_example

    out = Path(out_dir)
    with staged_output(out, force) as staged:
        # Decoded once: the reader and the dataset see the same pixels.
        arrays = [_load(path) for path, _ in items]
        readings = reader.read_batch(arrays)
        anns, skipped = [], []
        with tf.io.TFRecordWriter(str(staged / SHARD)) as writer:
            for (path, answer), array, reading in zip(items, arrays, readings):
                boxes = pseudo_boxes(reading, answer)
                if boxes is None and boxes_required:
                    skipped.append(str(path))
                    continue
                pixels = Image.fromarray(array)
                png = io.BytesIO()
                pixels.save(png, format="PNG")
                ann = {"index": len(anns), "file": str(path), "text": answer, "width": pixels.width,
                       "height": pixels.height, "font": "", "boxes": boxes or []}
                writer.write(encode_example(png.getvalue(), ann))
                anns.append(ann)
        if not anns:
            raise DatasetError(f"none of the {len(items)} labelled images got boxes: the model "
                               f"({reader.model_dir}) finds a different number of glyphs than every "
                               "answer has; check labels.tsv, or start from a model that reads these captchas")
        write_atomic(staged / "annotations.jsonl", "".join(json.dumps(a) + "\n" for a in anns))
        manifest = {
            "format": "tfrecord", "source": "labelled", "boxes_from": str(reader.model_dir),
            "config": {"allowed_symbols": {"choice": list(alphabets)}},
            "images": len(anns), "seed": seed, "preset": None, "skipped_without_boxes": skipped,
            "lengths": {str(k): v for k, v in sorted(Counter(len(a["text"]) for a in anns).items())},
            "shards": [{"file": SHARD, "count": len(anns), "bytes": (staged / SHARD).stat().st_size}],
        }
        # The manifest last: a dataset without one reads as unfinished.
        write_atomic(staged / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _load(path: Path):
    try:
        return load_image(path)
    except InvalidImageError as e:
        raise DatasetError(f"a labelled image cannot be read: {e}; fix it or remove its line from labels.tsv") from e


def finetune(model_dir: str | Path | None, folders: list[str | Path], out_dir: str | Path,
             fc: FinetuneConfig = FinetuneConfig(), log: Callable[[str], None] = lambda s: None,
             verbose: int = 1, force: bool = False) -> dict:
    """Fine-tune the detector package model_dir (None: the shipped default) on labelled folders;
    writes out_dir/model (and out_dir/data-train, data-val, the run's checkpoints) and returns
    the training summary. Those folders, where they exist, must be kdetect's own unless force."""
    from kdetect.detector.config import ModelConfig
    from kdetect.package import CONFIG, default_model_dir, package_kind
    from kdetect.serving.solver import Solver
    from kdetect.training.detector import TrainConfig, train

    fc.validate()
    model_dir, out = Path(model_dir or default_model_dir()), Path(out_dir)
    for part in ("model", "data-train", "data-val"):
        check_replaceable(out / part, force)
    if package_kind(model_dir) != "detector":
        raise ConfigError(f"{model_dir} is not a detector package: only the detector places glyph boxes to fine-tune on")
    items, alphabets = labelled_items(folders)
    start = ModelConfig.load(model_dir / CONFIG)
    foreign = foreign_answers(items, start.charset)
    if foreign:
        raise DatasetError(f"{foreign}; a fine-tune cannot teach a character the model has no class for: fix "
                           "those answers in labels.tsv, or remove their lines")
    train_items, val_items = split_items(items, fc.val_fraction, fc.seed)
    # The reader as shipped would fix each image's alphabet by its guess; the boxes need only places.
    reader = Solver(model_dir, guess_alphabet=False)
    made = write_dataset(reader, train_items, out / "data-train", alphabets, True, fc.seed, force)
    write_dataset(reader, val_items, out / "data-val", alphabets, False, fc.seed, force)
    log(f"{made['images']} of {len(train_items)} training images got boxes from {model_dir}; "
        f"{len(val_items)} held out to validate")
    tc = TrainConfig(
        train_data=str(out / "data-train"), val_data=str(out / "data-val"), out_dir=str(out),
        init_from=str(model_dir), epochs=fc.epochs, steps_per_epoch=fc.steps_per_epoch,
        batch_size=fc.batch_size, learning_rate=fc.learning_rate,
        warmup_steps=min(50, fc.steps_per_epoch), val_images=len(val_items), patience=fc.epochs,
        seed=fc.seed, augment=fc.augment, kmeans_anchors=False,
        model=dataclasses.replace(start, answer_length=one_length(items)),
        tune_thresholds=False)
    record = {"model": str(model_dir), "folders": [str(f) for f in folders], **dataclasses.asdict(fc)}
    write_atomic(out / "finetune_config.json", json.dumps(record, indent=2) + "\n")
    return train(tc, log=log, verbose=verbose, force=force)
