"""The glyph reader's part of training (kdetect/training/loop.py): labelled crops of generated
captchas, cross-entropy over the charset and "no glyph", crops read right on held-out captchas;
then its thresholds tuned with a detector, and the two-stage package."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdetect.configio import JsonConfig
from kdetect.errors import ConfigError
from kdetect.data.augment import augment_dataset
from kdetect.data.tfrecord import load_manifest, read_dataset
from kdetect.fsutil import check_replaceable, write_atomic
from kdetect.glyphs.config import GlyphConfig
from kdetect.glyphs.loss import glyph_loss
from kdetect.glyphs.model import build_glyph_reader
from kdetect.glyphs.samples import crop_dataset
from kdetect.package import GLYPH_CONFIG, GLYPH_WEIGHTS
from kdetect.training.glyph_tune import tune_glyph_thresholds
from kdetect.training.loop import check_recipe, run_training
from kdetect.training.packaging import attach_glyph_reader
from kdetect.training.releases import RELEASES, starting_package


@dataclass(frozen=True)
class GlyphTrainConfig(JsonConfig):
    what = "glyph reader training config"

    train_data: str
    val_data: str
    out_dir: str
    glyphs: GlyphConfig = field(default_factory=GlyphConfig)
    epochs: int = 10
    steps_per_epoch: int = 500
    batch_size: int = 256  # crops
    learning_rate: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    val_images: int = 1000
    patience: int = 10
    seed: int = 0
    augment: float = 0.3
    ema_decay: float = 0.999
    # A package with a glyph reader to start from: its layers start this reader's layers of the
    # same name and shape.
    init_from: str | None = None
    # A detector package to pair the reader with, a folder or a release reference (a released
    # detector kept as it is while its reader is retrained): the run then writes out_dir/model, a
    # two-stage package (kdetect.training.packaging.attach_glyph_reader). None: the reader's
    # weights only.
    detector: str | None = None

    @classmethod
    def convert(cls, data: dict) -> dict:
        data["glyphs"] = GlyphConfig.from_dict(data.get("glyphs", {}))
        return data

    def validate(self) -> None:
        check_recipe(self)


def validation_crops(tc: GlyphTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The held-out captchas' crops and their classes, the same ones every epoch."""
    ds = crop_dataset(read_dataset(tc.val_data).take(tc.val_images), tc.glyphs, seed=12345, batch_size=512,
                      shuffle=1, whole_batches=False)
    crops, labels = zip(*ds.as_numpy_iterator())
    return np.concatenate(crops), np.concatenate(labels)


def crop_accuracy(reader: keras.Model, crops: np.ndarray, labels: np.ndarray) -> float:
    """The share of crops whose class (a glyph, or "no glyph") the reader reads right; runs are
    kept by it."""
    outputs = reader.predict(crops, batch_size=1024, verbose=0)
    return float(np.mean(outputs.argmax(-1) == labels))


def start_from(reader: keras.Model, package: str) -> None:
    """Set reader's layers from the glyph reader of `package` where name and shapes agree."""
    from kdetect.package import load_glyph_reader

    found = load_glyph_reader(package)
    if found is None:
        raise ConfigError(f"init_from {package} has no glyph reader ({GLYPH_CONFIG}): name a two-stage package")
    for layer in found[0].layers:
        weights = layer.get_weights()
        try:
            own = reader.get_layer(layer.name)
        except ValueError:
            continue
        if weights and [w.shape for w in own.get_weights()] == [w.shape for w in weights]:
            own.set_weights(weights)


class GlyphKind:
    """The glyph reader's part of the loop: crops labelled by the renderer's boxes, cross-entropy
    over the charset and "no glyph", crops read right on the held-out captchas."""

    def __init__(self, tc: GlyphTrainConfig, val_crops: np.ndarray, val_labels: np.ndarray, start: Path | None = None):
        self.tc, self.val_crops, self.val_labels, self.start = tc, val_crops, val_labels, start

    def build(self, optimizer: keras.optimizers.Optimizer) -> tuple[keras.Model, keras.Model]:
        reader = build_glyph_reader(self.tc.glyphs)
        if self.start:
            start_from(reader, str(self.start))
        reader.compile(optimizer=optimizer, loss=glyph_loss(self.tc.glyphs.num_classes))
        return reader, reader

    def dataset(self) -> tf.data.Dataset:
        examples = read_dataset(self.tc.train_data, shuffle_seed=self.tc.seed).repeat()
        if self.tc.augment:
            examples = augment_dataset(examples, seed=self.tc.seed, fraction=float(self.tc.augment))
        return crop_dataset(examples, self.tc.glyphs, self.tc.seed, self.tc.batch_size)

    def accuracy(self, network: keras.Model) -> float:
        return crop_accuracy(network, self.val_crops, self.val_labels)


def train_glyphs(tc: GlyphTrainConfig, log: Callable[[str], None] = lambda s: None, verbose: int = 1,
                 force: bool = False) -> dict:
    """Train; out_dir/glyphs.weights.h5 (the best epoch's) and glyphs.json, and with tc.detector
    the two-stage package out_dir/model; returns a summary."""
    keras.utils.set_random_seed(tc.seed)
    out = Path(tc.out_dir)
    if tc.detector:
        check_replaceable(out / "model", force)
    out.mkdir(parents=True, exist_ok=True)
    start = starting_package(tc.init_from, out.parent / RELEASES)
    detector = starting_package(tc.detector, out.parent / RELEASES)
    manifest = load_manifest(tc.train_data)
    write_atomic(out / "train_config.json", tc.to_json())
    write_atomic(out / GLYPH_CONFIG, tc.glyphs.to_json())
    val_crops, val_labels = validation_crops(tc)
    # The best weights keep the reader's own file name: runs made before the one loop resume and package as they were.
    reader, run = run_training(tc, GlyphKind(tc, val_crops, val_labels, start), out, log, verbose, best_name=GLYPH_WEIGHTS)
    best = out / GLYPH_WEIGHTS
    summary = {"train_data": tc.train_data, "train_images": manifest["images"], "train_seed": manifest["seed"],
               "val_data": tc.val_data, "val_crops": len(val_labels),
               "seed": tc.seed, **run}
    summary.update(val_crop_accuracy=crop_accuracy(reader, val_crops, val_labels))
    if tc.init_from:
        summary["init_from"] = tc.init_from
    if detector:
        gcfg, accuracy = tuned_thresholds(tc, reader, detector)
        summary.update(detector=tc.detector, val_images=tc.val_images, val_string_accuracy=accuracy,
                       proposal_threshold=gcfg.proposal_threshold, reject_threshold=gcfg.reject_threshold)
        log(f"with {tc.detector}: held-out full-string accuracy {accuracy:.4f} (proposal threshold "
            f"{gcfg.proposal_threshold}, reject threshold {gcfg.reject_threshold})")
        attach_glyph_reader(detector, best, gcfg.to_json(), summary, out / "model", force)
    return summary


def tuned_thresholds(tc: GlyphTrainConfig, reader: keras.Model, detector_dir: Path) -> tuple[GlyphConfig, float]:
    """The glyph thresholds that read tc's held-out captchas best with the detector package in
    detector_dir (TF graphs)."""
    from kdetect.package import load_package
    from kdetect.serving.reader import compiled_inference, glyph_inference

    detector, cfg = load_package(detector_dir)
    infer = compiled_inference(detector, cfg)
    images, texts = [], []
    for example in read_dataset(tc.val_data).take(tc.val_images).as_numpy_iterator():
        images.append(example["image"])
        texts.append(example["text"].decode())
    return tune_glyph_thresholds(images, texts, cfg, tc.glyphs, lambda batch: [o.numpy() for o in infer(batch)],
                                 glyph_inference(reader, tc.glyphs, tc.out_dir, "tf"))
