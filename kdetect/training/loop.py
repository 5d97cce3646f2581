"""The one training loop every model kind goes through: the detector, the glyph reader and the
classifier baseline differ only in their part (a ModelKind: network and loss, data, accuracy).

The loop gives all of them the same run folder and the same behaviour: AdamW with warm-up and
cosine decay, an optional moving average of the weights (what is measured, kept and packaged),
held-out accuracy every epoch in val_history.jsonl, the best weights kept, a resumable backup,
early stopping, TensorBoard logs, and a run record saying how many epochs it took in all.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import keras
import numpy as np
import tensorflow as tf

from kdetect.data.tfrecord import read_dataset
from kdetect.errors import ConfigError
from kdetect.preprocess import InputSize, preprocess
from kdetect.training.ema import WeightEMA

HISTORY = "val_history.jsonl"
BEST = "best.weights.h5"


class ModelKind(Protocol):
    """A model kind's part of training."""

    def build(self, optimizer: keras.optimizers.Optimizer) -> tuple[keras.Model, keras.Model]:
        """-> (the network whose weights are measured, kept and packaged; the model fit() trains,
        compiled with optimizer and the kind's loss: the network itself, or a wrapper around it)."""

    def dataset(self) -> tf.data.Dataset:
        """Training batches (inputs, targets), forever."""

    def accuracy(self, network: keras.Model) -> float:
        """The held-out accuracy of network as its weights stand."""


class TrainingRecipe(Protocol):
    """The fields every training config shares (TrainConfig, GlyphTrainConfig, ClassifierTrainConfig)."""

    epochs: int
    steps_per_epoch: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    patience: int
    augment: float
    ema_decay: float


def check_recipe(tc: TrainingRecipe) -> None:
    """What every training config's augment and ema_decay must be."""
    if not 0.0 <= float(tc.augment) <= 1.0:
        raise ConfigError(f"augment is the fraction of images augmented, 0 to 1 (or true/false), not {tc.augment!r}")
    if not 0.0 <= tc.ema_decay < 1.0:
        raise ConfigError(f"ema_decay is the moving average's decay per step, 0 (off) or below 1 "
                          f"(e.g. 0.999), not {tc.ema_decay!r}")


def make_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MultiWorkerMirrored under TF_CONFIG, Mirrored over the GPUs (or the given devices), else default."""
    if devices:
        return tf.distribute.MirroredStrategy(devices)
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_optimizer(tc: TrainingRecipe) -> keras.optimizers.Optimizer:
    """AdamW with a linear warm-up to tc.learning_rate, then cosine decay over the remaining steps."""
    total = tc.epochs * tc.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        tc.learning_rate / 10, max(1, total - tc.warmup_steps), alpha=0.02,
        warmup_target=tc.learning_rate, warmup_steps=tc.warmup_steps)
    return keras.optimizers.AdamW(schedule, weight_decay=tc.weight_decay)


def validation_arrays(data_dir: str, cfg: InputSize, limit: int) -> tuple[np.ndarray, list[str]]:
    """The first `limit` validation images, preprocessed, and their answers."""
    ds = read_dataset(data_dir).take(limit)
    ds = ds.map(lambda ex: (preprocess(ex["image"], cfg), ex["text"])).batch(256)
    images, texts = [], []
    for batch, answers in ds.as_numpy_iterator():
        images.append(batch)
        texts += [t.decode() for t in answers]
    return np.concatenate(images), texts


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


class HeldOutAccuracy(keras.callbacks.Callback):
    """Held-out accuracy each epoch (a detector's and a classifier's of whole answers, which
    per-glyph scores would hide; a glyph reader's of crops), and the best weights kept as they
    are reached. `measure` returns it for the network as it stands.

    Each epoch's result goes to history_path (JSON lines: epoch, accuracy, training seconds so
    far), which also carries the best score and the clock across a resumed run. `weights`, a
    context manager, puts the weights to judge in the network (the moving average's, say)."""

    def __init__(self, network: keras.Model, measure: Callable[[], float], best_path: Path,
                 log: Callable[[str], None], history_path: Path,
                 weights: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        super().__init__()
        self.watched, self.measure, self.weights = network, measure, weights
        self.best_path, self.log, self.history_path = best_path, log, history_path
        past = read_history(history_path) if best_path.is_file() else []
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
        seconds = round(self.seconds_before + time.time() - self.started, 1)
        with open(self.history_path, "a") as f:
            f.write(json.dumps({"epoch": epoch + 1, "val_string_acc": acc, "seconds": seconds}) + "\n")
        self.log(f"epoch {epoch + 1}: held-out accuracy {acc:.4f} (best {self.best:.4f})")


def finished(out: Path, best: Path, epochs: int) -> bool:
    """Whether a run in out already trained all its epochs (its backup is gone by then: training
    again would start over, so a finished run is only packaged again)."""
    return best.is_file() and len(read_history(out / HISTORY)) >= epochs


def progress(verbose: int, stream=None) -> int:
    """Keras's verbosity for fit: its progress bar (1) redraws in a terminal, but to a log file or
    pipe it writes a line per step, so there one line per epoch (2) instead."""
    stream = sys.stdout if stream is None else stream
    return 2 if verbose == 1 and not (hasattr(stream, "isatty") and stream.isatty()) else verbose


def run_training(tc: TrainingRecipe, kind: ModelKind, out: Path, log: Callable[[str], None] = lambda s: None,
                 verbose: int = 1, devices: list[str] | None = None, best_name: str = BEST) -> tuple[keras.Model, dict]:
    """Train kind's network in the run folder out, resuming from out/backup after a kill.
    -> (the network holding its best weights, the run record: epochs in all and this session,
    seconds this session, devices)."""
    strategy = make_strategy(devices)
    with strategy.scope():
        network, trainer = kind.build(make_optimizer(tc))
    best = out / best_name
    # Before the accuracy and the backup, so both see the epoch's last average.
    ema = [WeightEMA(network, tc.ema_decay, out / "ema.npz")] if tc.ema_decay else []
    accuracy = HeldOutAccuracy(network, lambda: kind.accuracy(network), best, log, out / HISTORY,
                               weights=ema[0].applied if ema else contextlib.nullcontext)
    callbacks = [
        *ema,
        accuracy,
        # double_checkpoint: a kill while the backup is being written falls back to the one before.
        keras.callbacks.BackupAndRestore(str(out / "backup"), double_checkpoint=True),
        keras.callbacks.EarlyStopping(monitor="val_string_acc", mode="max", patience=tc.patience),
        keras.callbacks.TensorBoard(str(out / "logs"), update_freq=50),
    ]
    start, epochs_now = time.time(), 0
    if not finished(out, best, tc.epochs):
        # shuffle=False: every kind's dataset shuffles itself, which fit's own shuffle cannot do.
        history = trainer.fit(kind.dataset(), epochs=tc.epochs, steps_per_epoch=tc.steps_per_epoch,
                              callbacks=callbacks, verbose=progress(verbose), shuffle=False)
        epochs_now = len(history.history.get("loss", []))
    optimizer = getattr(network, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        # A finished run trained nothing this session: the best file holds a built optimizer's
        # state, which Keras would skip (with a warning) in an unbuilt one.
        with strategy.scope():
            optimizer.build(network.trainable_variables)
    network.load_weights(str(best))
    # A resumed run's total comes from its validation history, which survives the kill.
    return network, {"epochs_run": len(read_history(out / HISTORY)), "epochs_run_this_session": epochs_now,
                     "seconds_this_session": round(time.time() - start, 1),
                     "devices": strategy.num_replicas_in_sync}
