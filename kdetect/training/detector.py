"""The detector's part of training (kdetect/training/loop.py): boxes to YOLO targets, the YOLOv3
loss, full-answer accuracy; anchors fitted to the data, thresholds tuned on it, and its package."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdetect.alphabet import training_alphabets
from kdetect.configio import JsonConfig
from kdetect.data.augment import augment_dataset
from kdetect.data.tfrecord import load_manifest, read_dataset
from kdetect.detector.anchors import kmeans_anchors, mean_best_iou
from kdetect.detector.config import ModelConfig
from kdetect.detector.decode import decode_batch
from kdetect.detector.loss import yolo_loss
from kdetect.detector.model import build_detector
from kdetect.detector.targets import encode_targets
from kdetect.errors import ConfigError
from kdetect.fsutil import check_replaceable, write_atomic
from kdetect.package import CONFIG, WEIGHTS, load_weights, read_training
from kdetect.preprocess import preprocess
from kdetect.training.loop import BEST, HISTORY, check_recipe, read_history, run_training, validation_arrays
from kdetect.training.packaging import alphabets_line, glyph_writer, lineage, save_package
from kdetect.training.releases import RELEASES, starting_package


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    what = "training config"

    train_data: str
    val_data: str
    out_dir: str
    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 40
    steps_per_epoch: int = 500
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 300
    weight_decay: float = 5e-4
    val_images: int = 1000
    patience: int = 6
    seed: int = 0
    augment: float = 1.0  # the fraction of training images augmented; 0 (or false) turns it off
    train_images: int | None = None  # only the first N training images (learning curves); None: all
    kmeans_anchors: bool = True
    # Tune the score and NMS thresholds on the validation set when packaging; a small validation
    # set (a fine-tune's few hundred real captchas) picks thresholds by one or two images: keep
    # the starting model's there.
    tune_thresholds: bool = True
    # An exponential moving average of the weights (decay per step, e.g. 0.999: a horizon of about
    # 1,000 steps) is what each epoch measures, keeps as the best and packages; 0 turns it off.
    ema_decay: float = 0.0
    # Start from a model package (its anchors and weights) instead of from scratch: longer
    # training spread over several sessions, or fine-tuning on other data.
    init_from: str | None = None

    @classmethod
    def convert(cls, data: dict) -> dict:
        data["model"] = ModelConfig.from_dict(data.get("model", {}))
        return data

    def validate(self) -> None:
        check_recipe(self)


class YoloTrainer(keras.Model):
    """Wraps the detector for model.fit: the YOLOv3 loss needs every box of an image, not just
    one output's targets, so the loss is computed here rather than per output."""

    def __init__(self, detector: keras.Model, cfg: ModelConfig):
        super().__init__()
        self.detector = detector
        self.cfg = cfg

    def call(self, images, training=False):
        return self.detector(images, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = tf.reduce_mean(yolo_loss(y, y_pred, self.cfg))
        # Replicas' gradients are summed, so each replica contributes its share of the mean.
        return loss / tf.distribute.get_strategy().num_replicas_in_sync


class DetectorKind:
    """The detector's part of the loop: YOLO targets from the boxes, the YOLOv3 loss, whole
    answers read right on the held-out images."""

    def __init__(self, tc: TrainConfig, cfg: ModelConfig, val_images: np.ndarray, val_texts: list[str],
                 start: Path | None = None):
        self.tc, self.cfg, self.val_images, self.val_texts, self.start = tc, cfg, val_images, val_texts, start

    def build(self, optimizer: keras.optimizers.Optimizer) -> tuple[keras.Model, keras.Model]:
        detector = build_detector(self.cfg)
        if self.start:
            start = self.start
            # Through the package loader: a package a user names is checked like any other.
            load_weights(detector, start / WEIGHTS, f"the network {start / CONFIG} describes")
        trainer = YoloTrainer(detector, self.cfg)
        trainer(np.zeros((1, self.cfg.input_height, self.cfg.input_width, 3), np.float32))  # built, so a backup can load
        trainer.compile(optimizer=optimizer)
        return detector, trainer

    def dataset(self) -> tf.data.Dataset:
        return training_dataset(self.tc, self.cfg)

    def accuracy(self, network: keras.Model) -> float:
        return string_accuracy(network, self.val_images, self.val_texts, self.cfg)


def prepare(example: dict, cfg: ModelConfig) -> tuple[tf.Tensor, dict]:
    """A decoded example -> (preprocessed image, targets), boxes moved to model-input pixels."""
    hw = tf.cast(tf.shape(example["image"])[:2], tf.float32)
    image = preprocess(example["image"], cfg)
    scale = tf.stack([cfg.input_width / hw[1], cfg.input_height / hw[0]] * 2)
    return image, encode_targets(example["boxes"] * scale, example["labels"], cfg)


def training_dataset(tc: TrainConfig, cfg: ModelConfig) -> tf.data.Dataset:
    ds = read_dataset(tc.train_data, shuffle_seed=tc.seed, limit=tc.train_images).repeat()
    if tc.augment:
        ds = augment_dataset(ds, seed=tc.seed, fraction=float(tc.augment))
    ds = ds.map(lambda ex: prepare(ex, cfg), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(tc.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def string_accuracy(detector: keras.Model, images: np.ndarray, texts: list[str], cfg: ModelConfig) -> float:
    outputs = detector.predict(images, batch_size=256, verbose=0)
    readings = decode_batch([np.asarray(o) for o in outputs], cfg, length=cfg.answer_length)
    return float(np.mean([r.text == t for r, t in zip(readings, texts)]))


def tune_thresholds(detector: keras.Model, images: np.ndarray, texts: list[str], cfg: ModelConfig) -> ModelConfig:
    """The score and NMS thresholds that read the most held-out answers right; the current ones win ties."""
    outputs = [np.asarray(o) for o in detector.predict(images, batch_size=256, verbose=0)]

    def accuracy(c: ModelConfig) -> float:
        return float(np.mean([r.text == t for r, t in zip(decode_batch(outputs, c), texts)]))

    best_cfg, best = cfg, accuracy(cfg)
    for score in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
        for iou in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6):
            candidate = dataclasses.replace(cfg, score_threshold=score, nms_iou=iou)
            acc = accuracy(candidate)
            if acc > best:
                best_cfg, best = candidate, acc
    return best_cfg


def fit_anchors(data_dir: str, cfg: ModelConfig, seed: int) -> tuple[ModelConfig, float]:
    """k-means anchors over the training boxes, in model-input pixels."""
    wh = []
    with open(Path(data_dir) / "annotations.jsonl") as f:
        for line in f:
            ann = json.loads(line)
            sx, sy = cfg.input_width / ann["width"], cfg.input_height / ann["height"]
            wh += [((b[2] - b[0]) * sx, (b[3] - b[1]) * sy) for b in ann["boxes"] if b]
            if len(wh) > 200_000:
                break
    k = len(cfg.strides) * cfg.anchors_per_scale
    anchors = kmeans_anchors(np.array(wh), k, seed=seed)
    cfg = dataclasses.replace(cfg, anchors=tuple((round(float(w), 2), round(float(h), 2)) for w, h in anchors))
    return cfg, mean_best_iou(np.array(wh), anchors)


def train(tc: TrainConfig, devices: list[str] | None = None, log: Callable[[str], None] = lambda s: None,
          verbose: int = 1, force: bool = False) -> dict:
    """Train (resuming from out_dir/backup if a run was interrupted); writes out_dir/model and returns
    its summary. An out_dir/model holding what kdetect did not write is refused before training,
    unless force."""
    keras.utils.set_random_seed(tc.seed)
    out = Path(tc.out_dir)
    check_replaceable(out / "model", force)
    out.mkdir(parents=True, exist_ok=True)
    start = starting_package(tc.init_from, out.parent / RELEASES)
    train_manifest = load_manifest(tc.train_data)
    load_manifest(tc.val_data)
    cfg = tc.model
    if start:
        # The input size is the run's own: a site's wider canvas keeps its glyphs' proportions
        # (the network is convolutional, so the start's weights fit any size).
        cfg = dataclasses.replace(ModelConfig.load(start / CONFIG),
                                  score_threshold=cfg.score_threshold, nms_iou=cfg.nms_iou,
                                  answer_length=cfg.answer_length, answer_lengths=cfg.answer_lengths,
                                  input_height=cfg.input_height,
                                  input_width=cfg.input_width)
        log(f"starting from {tc.init_from} (anchors {cfg.anchors})")
    elif tc.kmeans_anchors:
        cfg, fit = fit_anchors(tc.train_data, cfg, tc.seed)
        log(f"anchors {cfg.anchors} (mean best IoU {fit:.3f})")
    cfg = dataclasses.replace(cfg, alphabets=training_alphabets(train_manifest))
    cfg.validate()
    write_atomic(out / "train_config.json", tc.to_json())
    # Beside best.weights.h5 from the start, so a checkpoint is usable even if the run never ends.
    write_atomic(out / "model_config.json", cfg.to_json())

    val_images, val_texts = validation_arrays(tc.val_data, cfg, tc.val_images)
    kind = DetectorKind(tc, cfg, val_images, val_texts, start)
    detector, run = run_training(tc, kind, out, log, verbose, devices)
    return _package(tc, cfg, detector, val_images, val_texts, train_manifest, run, start, force=force)


def package_best(tc: TrainConfig, out_dir: str | Path | None = None, force: bool = False) -> dict:
    """Package the best checkpoint so far of tc's run, which may still be going or have been
    stopped (thresholds tuned on the validation set as at the end of training)."""
    out = Path(tc.out_dir)
    best = out / BEST
    if not best.is_file():
        raise ConfigError(f"{out} has no best.weights.h5 yet: a checkpoint appears after the first epoch")
    check_replaceable(out_dir or out / "model", force)
    cfg = ModelConfig.load(out / "model_config.json")
    detector = build_detector(cfg)
    detector.load_weights(str(best))
    val_images, val_texts = validation_arrays(tc.val_data, cfg, tc.val_images)
    history = read_history(out / HISTORY)
    run = {"checkpoint": "best so far of the run", "epochs_run": len(history),
           "seconds": history[-1]["seconds"] if history else None}
    start = starting_package(tc.init_from, out.parent / RELEASES)
    return _package(tc, cfg, detector, val_images, val_texts, load_manifest(tc.train_data), run, start, out_dir, force)


def _package(tc, cfg, detector, val_images, val_texts, train_manifest, run, start, out_dir=None, force=False) -> dict:
    if tc.tune_thresholds:
        cfg = tune_thresholds(detector, val_images, val_texts, cfg)
    summary = {
        "train_data": tc.train_data, "train_preset": train_manifest.get("preset"),
        "train_images": train_manifest["images"], "train_seed": train_manifest["seed"],
        "train_source": train_manifest.get("source", "synthetic"),
        "val_data": tc.val_data, "val_images": len(val_texts),
        "val_string_accuracy": string_accuracy(detector, val_images, val_texts, cfg),
        "steps_per_epoch": tc.steps_per_epoch, "batch_size": tc.batch_size, "seed": tc.seed, **run,
    }
    if tc.init_from:
        # The whole lineage travels with the model: a continued run is only reproducible from its parents.
        summary["init_from"] = {"package": tc.init_from, "training": read_training(start)}
    # The glyph reader of a two-stage package it continues stays with it: it reads any detector's boxes.
    save_package(out_dir or Path(tc.out_dir) / "model", detector, cfg, summary, detector_card(cfg, tc, summary), force,
                 glyph_writer(start, input_size=(cfg.input_height, cfg.input_width)))
    return summary


def detector_card(cfg: ModelConfig, tc: TrainConfig, summary: dict) -> str:
    """A trained detector's card."""
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
