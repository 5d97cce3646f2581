"""Training the detector from TFRecord shards: input pipeline, distribution, callbacks, package."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kdetect.configio import JsonConfig
from kdetect.data.augment import augment_dataset
from kdetect.data.tfrecord import load_manifest, read_dataset
from kdetect.ema import WeightEMA
from kdetect.fsutil import check_replaceable, write_atomic
from kdetect.errors import ConfigError
from kdetect.package import alphabets_line, glyph_writer, lineage, read_training, save_package
from kdetect.yolo.alphabet import training_alphabets
from kdetect.yolo.anchors import kmeans_anchors, mean_best_iou
from kdetect.yolo.config import ModelConfig
from kdetect.yolo.decode import decode_batch
from kdetect.yolo.loss import yolo_loss
from kdetect.yolo.model import build_detector
from kdetect.yolo.preprocess import InputSize, preprocess
from kdetect.yolo.targets import encode_targets


HISTORY = "val_history.jsonl"


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


def check_recipe(tc) -> None:
    """What every training config's augment and ema_decay must be (the detector's, the glyph reader's)."""
    if not 0.0 <= float(tc.augment) <= 1.0:
        raise ConfigError(f"augment is the fraction of images augmented, 0 to 1 (or true/false), not {tc.augment!r}")
    if not 0.0 <= tc.ema_decay < 1.0:
        raise ConfigError(f"ema_decay is the moving average's decay per step, 0 (off) or below 1 "
                          f"(e.g. 0.999), not {tc.ema_decay!r}")


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


def make_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirrored under TF_CONFIG, Mirrored over the GPUs (or the given devices), else default."""
    if devices:
        return tf.distribute.MirroredStrategy(devices)
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(tc) -> keras.optimizers.Optimizer:
    """AdamW with a linear warm-up to tc.learning_rate, then cosine decay over the remaining steps.
    tc: any training config with learning_rate, warmup_steps, epochs, steps_per_epoch, weight_decay."""
    total = tc.epochs * tc.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        tc.learning_rate / 10, max(1, total - tc.warmup_steps), alpha=0.02,
        warmup_target=tc.learning_rate, warmup_steps=tc.warmup_steps)
    return keras.optimizers.AdamW(schedule, weight_decay=tc.weight_decay)


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


def validation_arrays(data_dir: str, cfg: InputSize, limit: int) -> tuple[np.ndarray, list[str]]:
    """The first `limit` validation images, preprocessed, and their answers."""
    ds = read_dataset(data_dir).take(limit)
    ds = ds.map(lambda ex: (preprocess(ex["image"], cfg), ex["text"])).batch(256)
    images, texts = [], []
    for batch, answers in ds.as_numpy_iterator():
        images.append(batch)
        texts += [t.decode() for t in answers]
    return np.concatenate(images), texts


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


class StringAccuracy(keras.callbacks.Callback):
    """Full-answer accuracy on held-out data each epoch (per-glyph scores hide whole-answer
    failures), and the best model's weights kept as they are reached. `measure` reads the
    held-out set with the model as it stands and returns the fraction of answers read right.

    Each epoch's result goes to history_path (JSON lines: epoch, accuracy, training seconds so
    far), which also carries the best score and the clock across a resumed run. `weights`, a
    context manager, puts the weights to judge in the model (the moving average's, say)."""

    def __init__(self, model: keras.Model, measure: Callable[[], float], best_path: Path,
                 log: Callable[[str], None], history_path: Path | None = None,
                 weights: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        super().__init__()
        self.watched, self.measure, self.weights = model, measure, weights
        self.best_path, self.log, self.history_path = best_path, log, history_path
        past = read_history(history_path) if history_path and best_path.is_file() else []
        self.best = max((h["val_string_acc"] for h in past), default=-1.0)
        self.seconds_before = past[-1]["seconds"] if past else 0.0
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        with self.weights():
            acc = self.measure()
            if acc > self.best:
                self.best = acc
                tmp = self.best_path.with_name("tmp-" + self.best_path.name)
                self.watched.save_weights(str(tmp))
                os.replace(tmp, self.best_path)
        if logs is not None:
            logs["val_string_acc"] = acc
        if self.history_path:
            seconds = round(self.seconds_before + time.time() - self.started, 1)
            with open(self.history_path, "a") as f:
                f.write(json.dumps({"epoch": epoch + 1, "val_string_acc": acc, "seconds": seconds}) + "\n")
        self.log(f"epoch {epoch + 1}: val full-string accuracy {acc:.4f} (best {self.best:.4f})")


def read_history(path: Path) -> list[dict]:
    """A run's per-epoch validation history; a repeated epoch (re-run after a kill) keeps its last line."""
    if not path.is_file():
        return []
    by_epoch = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        by_epoch[entry["epoch"]] = entry
    return [by_epoch[k] for k in sorted(by_epoch)]


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
    train_manifest = load_manifest(tc.train_data)
    load_manifest(tc.val_data)
    cfg = tc.model
    if tc.init_from:
        cfg = dataclasses.replace(ModelConfig.load(Path(tc.init_from) / "config.json"),
                                  score_threshold=cfg.score_threshold, nms_iou=cfg.nms_iou,
                                  answer_length=cfg.answer_length)
        log(f"starting from {tc.init_from} (anchors {cfg.anchors})")
    elif tc.kmeans_anchors:
        cfg, fit = fit_anchors(tc.train_data, cfg, tc.seed)
        log(f"anchors {cfg.anchors} (mean best IoU {fit:.3f})")
    cfg = dataclasses.replace(cfg, alphabets=training_alphabets(train_manifest))
    cfg.validate()
    write_atomic(out / "train_config.json", tc.to_json())
    # Beside best.weights.h5 from the start, so a checkpoint is usable even if the run never ends.
    write_atomic(out / "model_config.json", cfg.to_json())

    strategy = make_strategy(devices)
    with strategy.scope():
        detector = build_detector(cfg)
        if tc.init_from:
            detector.load_weights(str(Path(tc.init_from) / "detector.weights.h5"))
        trainer = YoloTrainer(detector, cfg)
        trainer(np.zeros((1, cfg.input_height, cfg.input_width, 3), np.float32))  # built, so a backup can load
        trainer.compile(optimizer=make_optimizer(tc))
    val_images, val_texts = validation_arrays(tc.val_data, cfg, tc.val_images)
    best = out / "best.weights.h5"
    # Before the accuracy and the backup, so both see the epoch's last average.
    ema = [WeightEMA(detector, tc.ema_decay, out / "ema.npz")] if tc.ema_decay else []
    accuracy = StringAccuracy(detector, lambda: string_accuracy(detector, val_images, val_texts, cfg), best, log,
                              out / HISTORY, weights=ema[0].applied if ema else contextlib.nullcontext)
    callbacks = [
        *ema,
        accuracy,
        # double_checkpoint: a kill while the backup is being written falls back to the one before.
        keras.callbacks.BackupAndRestore(str(out / "backup"), double_checkpoint=True),
        keras.callbacks.EarlyStopping(monitor="val_string_acc", mode="max", patience=tc.patience),
        keras.callbacks.TensorBoard(str(out / "logs"), update_freq=50),
    ]
    start = time.time()
    history = trainer.fit(training_dataset(tc, cfg), epochs=tc.epochs, steps_per_epoch=tc.steps_per_epoch,
                          callbacks=callbacks, verbose=verbose)
    seconds = time.time() - start
    # A resumed run's total comes from its validation history, which survives the kill.
    run = {"epochs_run": len(read_history(out / HISTORY)), "epochs_run_this_session": len(history.history.get("loss", [])),
           "seconds_this_session": round(seconds, 1), "devices": strategy.num_replicas_in_sync}
    return _package(tc, cfg, detector, best, val_images, val_texts, train_manifest, run, force=force)


def package_best(tc: TrainConfig, out_dir: str | Path | None = None, force: bool = False) -> dict:
    """Package the best checkpoint so far of tc's run, which may still be going or have been
    stopped (thresholds tuned on the validation set as at the end of training)."""
    out = Path(tc.out_dir)
    best = out / "best.weights.h5"
    if not best.is_file():
        raise ConfigError(f"{out} has no best.weights.h5 yet: a checkpoint appears after the first epoch")
    check_replaceable(out_dir or out / "model", force)
    cfg = ModelConfig.load(out / "model_config.json")
    detector = build_detector(cfg)
    val_images, val_texts = validation_arrays(tc.val_data, cfg, tc.val_images)
    history = read_history(out / HISTORY)
    run = {"checkpoint": "best so far of the run", "epochs_run": len(history),
           "seconds": history[-1]["seconds"] if history else None}
    return _package(tc, cfg, detector, best, val_images, val_texts, load_manifest(tc.train_data), run, out_dir, force)


def _package(tc, cfg, detector, best, val_images, val_texts, train_manifest, run, out_dir=None, force=False) -> dict:
    detector.load_weights(str(best))
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
        summary["init_from"] = {"package": tc.init_from, "training": read_training(tc.init_from)}
    # The glyph reader of a two-stage package it continues stays with it: it reads any detector's boxes.
    save_package(out_dir or Path(tc.out_dir) / "model", detector, cfg, summary, model_card(cfg, tc, summary), force,
                 glyph_writer(tc.init_from))
    return summary


def model_card(cfg: ModelConfig, tc: TrainConfig, summary: dict) -> str:
    params = build_detector(cfg).count_params()
    labelled = summary.get("train_source") == "labelled"
    if labelled:
        data = (f"- Training data: {summary['train_images']:,} labelled captchas ({tc.train_data}), each glyph's "
                f"box placed by the model it continues (kdetect/finetune.py).\n")
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
