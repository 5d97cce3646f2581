"""An exponential moving average of a model's weights, kept beside training.

The average of the weights along the last few thousand steps reads better than the weights at
any one step (the hand-made model soups approximated it). It lives in numpy beside the run and
is saved at every epoch's end, so a run killed and resumed keeps averaging where it stopped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np


class WeightEMA(keras.callbacks.Callback):
    """average <- decay * average + (1 - decay) * weights, every `every` steps (with decay**every,
    which is the same horizon for a fraction of the cost)."""

    def __init__(self, watched: keras.Model, decay: float, path: Path, every: int = 4):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie strictly between 0 and 1, not {decay}")
        self.watched, self.decay, self.path, self.every = watched, decay, Path(path), every
        self.average: list[np.ndarray] | None = None
        self.steps = 0

    def on_train_begin(self, logs=None) -> None:
        current = self.watched.get_weights()
        saved = load_weights_npz(self.path) if self.path.is_file() else None
        fits = saved is not None and [a.shape for a in saved] == [w.shape for w in current]
        self.average = saved if fits else [np.array(w, np.float32) for w in current]

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.steps += 1
        if self.steps % self.every:
            return
        keep = self.decay ** self.every
        for avg, w in zip(self.average, self.watched.get_weights()):
            avg *= keep
            avg += (1.0 - keep) * w

    def on_epoch_end(self, epoch, logs=None) -> None:
        save_weights_npz(self.path, self.average)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the duration, the training weights back after."""
        raw = self.watched.get_weights()
        self.watched.set_weights(self.average)
        try:
            yield
        finally:
            self.watched.set_weights(raw)


def save_weights_npz(path: Path, weights: list[np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
    np.savez(tmp, *weights)
    os.replace(tmp, path)


def load_weights_npz(path: Path) -> list[np.ndarray]:
    with np.load(path) as data:
        return [data[f"arr_{i}"].astype(np.float32) for i in range(len(data.files))]
