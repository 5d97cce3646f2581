"""The classifier baseline's part of training (kdetect/training/loop.py), from the detector's
TFRecord shards (texts only, boxes unused): one class id per position as the target, and
answers of another length than the model's left out of training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdetect.classifier.config import ClassifierConfig
from kdetect.classifier.decode import decode_probabilities
from kdetect.classifier.model import build_classifier
from kdetect.configio import JsonConfig
from kdetect.data.augment import augment_dataset
from kdetect.data.tfrecord import load_manifest, read_dataset
from kdetect.errors import DatasetError
from kdetect.fsutil import check_replaceable, write_atomic
from kdetect.preprocess import preprocess
from kdetect.training.loop import BEST, check_recipe, run_training, validation_arrays
from kdetect.training.packaging import save_classifier_package


@dataclass(frozen=True)
class ClassifierTrainConfig(JsonConfig):
    what = "classifier training config"

    train_data: str
    val_data: str
    out_dir: str
    model: ClassifierConfig = field(default_factory=ClassifierConfig)
    epochs: int = 30
    steps_per_epoch: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    val_images: int = 1000
    patience: int = 5
    seed: int = 0
    augment: float = 1.0  # the fraction of training images augmented; 0 (or false) turns it off
    train_images: int | None = None  # only the first N training images (learning curves); None: all
    ema_decay: float = 0.0  # as the detector's: the weights' moving average is what is measured and kept

    @classmethod
    def convert(cls, data: dict) -> dict:
        data["model"] = ClassifierConfig.from_dict(data.get("model", {}))
        return data

    def validate(self) -> None:
        check_recipe(self)


def whole_answer_accuracy(probs: np.ndarray, texts: list[str], charset: str) -> float:
    """Fraction of answers read right at every position; an answer of another length is wrong.
    probs: [N, length, classes]."""
    if not texts:
        return 0.0
    return float(np.mean([decode_probabilities(p, charset).text == t for p, t in zip(probs, texts)]))


def position_accuracy(probs: np.ndarray, texts: list[str], charset: str) -> float:
    """Keras's per-position accuracy, over the answers of the model's length: for comparison only,
    it overstates how many answers are read (0.5 when one glyph of every pair is right)."""
    length = probs.shape[1]
    pairs = [(decode_probabilities(p, charset).text, t) for p, t in zip(probs, texts) if len(t) == length]
    return float(np.mean([r == c for read, truth in pairs for r, c in zip(read, truth)])) if pairs else 0.0


def char_ids(charset: str) -> tf.lookup.StaticHashTable:
    """char -> class id; -1 for a char outside the charset."""
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(list(charset)), tf.range(len(charset), dtype=tf.int32))
    return tf.lookup.StaticHashTable(init, default_value=-1)


def answer_labels(text: tf.Tensor, table: tf.lookup.StaticHashTable) -> tf.Tensor:
    return table.lookup(tf.strings.bytes_split(text))


def fits(labels: tf.Tensor, length: int) -> tf.Tensor:
    """The answer has the model's length and only charset characters."""
    return tf.logical_and(tf.equal(tf.size(labels), length), tf.reduce_all(labels >= 0))


def training_dataset(tc: ClassifierTrainConfig, cfg: ClassifierConfig) -> tf.data.Dataset:
    """(preprocessed image, class ids [length]) batches of the answers that fit the model, forever."""
    table = char_ids(cfg.charset)
    ds = read_dataset(tc.train_data, shuffle_seed=tc.seed, limit=tc.train_images)
    ds = ds.filter(lambda ex: fits(answer_labels(ex["text"], table), cfg.length)).repeat()
    if tc.augment:
        ds = augment_dataset(ds, seed=tc.seed, fraction=float(tc.augment))

    def prepare(ex: dict) -> tuple[tf.Tensor, tf.Tensor]:
        return preprocess(ex["image"], cfg), tf.ensure_shape(answer_labels(ex["text"], table), [cfg.length])

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(tc.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def usable_images(manifest: dict, data_dir: str, length: int) -> int:
    """Training answers of the model's length, from the manifest; refuses data with none."""
    usable = int(manifest.get("lengths", {}).get(str(length), 0))
    if not usable:
        lengths = ", ".join(f"{k}: {v}" for k, v in manifest.get("lengths", {}).items())
        raise DatasetError(f"{data_dir} holds no answers of length {length} (lengths {lengths}); the classifier "
                           f"trains only on answers of its own length: generate data of that length, e.g. "
                           "`kdetect generate --preset l2 ... --tfrecord` for length 2")
    return usable


class ClassifierKind:
    """The classifier's part of the loop: one class id per position, cross-entropy at each, whole
    answers read right on the held-out images."""

    def __init__(self, tc: ClassifierTrainConfig, cfg: ClassifierConfig, val_images: np.ndarray, val_texts: list[str]):
        self.tc, self.cfg, self.val_images, self.val_texts = tc, cfg, val_images, val_texts

    def build(self, optimizer: keras.optimizers.Optimizer) -> tuple[keras.Model, keras.Model]:
        classifier = build_classifier(self.cfg)
        # No metrics compiled in: the loop measures whole answers, and the package is saved from
        # a fresh, uncompiled copy anyway.
        classifier.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy())
        return classifier, classifier

    def dataset(self) -> tf.data.Dataset:
        return training_dataset(self.tc, self.cfg)

    def accuracy(self, network: keras.Model) -> float:
        probs = network.predict(self.val_images, batch_size=256, verbose=0)
        return whole_answer_accuracy(probs, self.val_texts, self.cfg.charset)


def train_classifier(tc: ClassifierTrainConfig, devices: list[str] | None = None,
                     log: Callable[[str], None] = lambda s: None, verbose: int = 1) -> dict:
    """Train (resuming from out_dir/backup if a run was interrupted); writes out_dir/model and returns its summary."""
    keras.utils.set_random_seed(tc.seed)
    out = Path(tc.out_dir)
    check_replaceable(out / "model")  # before hours of training, not after
    out.mkdir(parents=True, exist_ok=True)
    cfg = tc.model
    train_manifest = load_manifest(tc.train_data)
    load_manifest(tc.val_data)
    usable = usable_images(train_manifest, tc.train_data, cfg.length)
    log(f"{usable} of {train_manifest['images']} training answers have length {cfg.length}; the rest are skipped")
    write_atomic(out / "train_config.json", tc.to_json())
    write_atomic(out / "model_config.json", cfg.to_json())

    val_images, val_texts = validation_arrays(tc.val_data, cfg, tc.val_images)
    classifier, run = run_training(tc, ClassifierKind(tc, cfg, val_images, val_texts), out, log, verbose, devices)
    probs = classifier.predict(val_images, batch_size=256, verbose=0)
    summary = {
        "train_data": tc.train_data, "train_preset": train_manifest.get("preset"),
        "train_images": train_manifest["images"], "train_images_of_length": usable,
        "train_seed": train_manifest["seed"], "val_data": tc.val_data, "val_images": len(val_texts),
        "val_string_accuracy": whole_answer_accuracy(probs, val_texts, cfg.charset),
        "val_position_accuracy": position_accuracy(probs, val_texts, cfg.charset),
        "steps_per_epoch": tc.steps_per_epoch, "batch_size": tc.batch_size, "seed": tc.seed, **run,
        "parameters": classifier.count_params(),
    }
    save_classifier_package(out / "model", out / BEST, cfg, summary, classifier_card(cfg, tc, summary))
    return summary


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
