"""Training the glyph reader on crops of generated captchas; resumes after a kill."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from kdetect.configio import JsonConfig
from kdetect.data.augment import augment_dataset
from kdetect.data.tfrecord import load_manifest, read_dataset
from kdetect.ema import WeightEMA
from kdetect.fsutil import check_replaceable, write_atomic
from kdetect.glyphs.config import GlyphConfig
from kdetect.glyphs.model import build_glyph_reader
from kdetect.glyphs.samples import crop_dataset
from kdetect.glyphs.tune import tune_glyph_thresholds
from kdetect.package import GLYPH_CONFIG, GLYPH_WEIGHTS, attach_glyph_reader
from kdetect.train import HISTORY, StringAccuracy, check_recipe, make_optimizer, read_history


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
    # A detector package to pair the reader with: the run then writes out_dir/model, a two-stage
    # package (kdetect.package.attach_glyph_reader). None: the reader's weights only.
    detector: str | None = None

    @classmethod
    def convert(cls, data: dict) -> dict:
        data["glyphs"] = GlyphConfig.from_dict(data.get("glyphs", {}))
        return data

    def validate(self) -> None:
        check_recipe(self)


def validation_crops(tc: GlyphTrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The held-out captchas' crops, the same ones every epoch."""
    ds = crop_dataset(read_dataset(tc.val_data).take(tc.val_images), tc.glyphs, seed=12345, batch_size=512,
                      shuffle=1, whole_batches=False)
    crops, labels = zip(*ds.as_numpy_iterator())
    return np.concatenate(crops), np.concatenate(labels)


def crop_accuracy(reader: keras.Model, crops: np.ndarray, labels: np.ndarray) -> float:
    logits = reader.predict(crops, batch_size=1024, verbose=0)
    return float(np.mean(logits.argmax(-1) == labels))


def train_glyphs(tc: GlyphTrainConfig, log: Callable[[str], None] = lambda s: None, verbose: int = 1,
                 force: bool = False) -> dict:
    """Train; out_dir/glyphs.weights.h5 (the best epoch's) and glyphs.json, and with tc.detector
    the two-stage package out_dir/model; returns a summary."""
    keras.utils.set_random_seed(tc.seed)
    out = Path(tc.out_dir)
    if tc.detector:
        check_replaceable(out / "model", force)
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(tc.train_data)
    write_atomic(out / "train_config.json", tc.to_json())
    write_atomic(out / GLYPH_CONFIG, tc.glyphs.to_json())
    reader = build_glyph_reader(tc.glyphs)
    reader.compile(optimizer=make_optimizer(tc),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    examples = read_dataset(tc.train_data, shuffle_seed=tc.seed).repeat()
    if tc.augment:
        examples = augment_dataset(examples, seed=tc.seed, fraction=float(tc.augment))
    train = crop_dataset(examples, tc.glyphs, tc.seed, tc.batch_size)
    val_crops, val_labels = validation_crops(tc)
    best = out / GLYPH_WEIGHTS
    ema = [WeightEMA(reader, tc.ema_decay, out / "ema.npz")] if tc.ema_decay else []
    accuracy = StringAccuracy(reader, lambda: crop_accuracy(reader, val_crops, val_labels), best, log,
                              out / HISTORY, weights=ema[0].applied if ema else contextlib.nullcontext)
    callbacks = [*ema, accuracy, keras.callbacks.BackupAndRestore(str(out / "backup"), double_checkpoint=True)]
    start = time.time()
    # A finished run (its backup is gone by then) is not trained again, only packaged.
    if not (best.is_file() and len(read_history(out / HISTORY)) >= tc.epochs):
        reader.fit(train, epochs=tc.epochs, steps_per_epoch=tc.steps_per_epoch, callbacks=callbacks, verbose=verbose)
    reader.load_weights(str(best))
    summary = {"train_data": tc.train_data, "train_images": manifest["images"], "train_seed": manifest["seed"],
               "val_data": tc.val_data, "val_crops": len(val_labels),
               "val_crop_accuracy": crop_accuracy(reader, val_crops, val_labels),
               "seconds_this_session": round(time.time() - start, 1), "seed": tc.seed}
    if tc.detector:
        gcfg, accuracy = tuned_thresholds(tc, reader)
        summary.update(val_images=tc.val_images, val_string_accuracy=accuracy,
                       proposal_threshold=gcfg.proposal_threshold, reject_threshold=gcfg.reject_threshold)
        log(f"with {tc.detector}: held-out full-string accuracy {accuracy:.4f} (proposal threshold "
            f"{gcfg.proposal_threshold}, reject threshold {gcfg.reject_threshold})")
        attach_glyph_reader(tc.detector, best, gcfg.to_json(), summary, out / "model", force)
    return summary


def tuned_thresholds(tc: GlyphTrainConfig, reader: keras.Model) -> tuple[GlyphConfig, float]:
    """The glyph thresholds that read tc's held-out captchas best with tc.detector (TF graphs)."""
    from kdetect.reader import compiled_inference, glyph_inference
    from kdetect.package import load_package

    detector, cfg = load_package(tc.detector)
    infer = compiled_inference(detector, cfg)
    images, texts = [], []
    for example in read_dataset(tc.val_data).take(tc.val_images).as_numpy_iterator():
        images.append(example["image"])
        texts.append(example["text"].decode())
    return tune_glyph_thresholds(images, texts, cfg, tc.glyphs, lambda batch: [o.numpy() for o in infer(batch)],
                                 glyph_inference(reader, tc.glyphs, tc.out_dir, "tf"))
