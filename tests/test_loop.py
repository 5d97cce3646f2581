"""The one training loop (kdetect/training/loop.py) with a toy model kind: what every kind gets."""

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kdetect.training.loop import BEST, HISTORY, read_history, run_training

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32)  # a rule one dense layer learns in a few steps


@dataclass(frozen=True)
class Recipe:
    epochs: int = 3
    steps_per_epoch: int = 8
    learning_rate: float = 0.05
    warmup_steps: int = 1
    weight_decay: float = 0.0
    patience: int = 5
    augment: float = 0.0
    ema_decay: float = 0.0


class ToyKind:
    def build(self, optimizer):
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        net.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return net, net

    def dataset(self):
        return tf.data.Dataset.from_tensor_slices((X, Y)).repeat().batch(16)

    def accuracy(self, network):
        return float(np.mean(network.predict(X, verbose=0).argmax(-1) == Y))


def test_the_loop_keeps_the_best_records_history_and_learns(tmp_path: Path):
    keras.utils.set_random_seed(1)
    network, record = run_training(Recipe(), ToyKind(), tmp_path, verbose=0)
    history = read_history(tmp_path / HISTORY)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert record["epochs_run"] == 3 and record["epochs_run_this_session"] == 3 and record["devices"] >= 1
    assert (tmp_path / BEST).is_file()
    # The network comes back holding the best epoch's weights, and they read the toy rule.
    assert ToyKind().accuracy(network) == pytest.approx(max(h["val_string_acc"] for h in history))
    assert max(h["val_string_acc"] for h in history) > 0.9


def test_a_finished_run_is_not_trained_again(tmp_path: Path):
    keras.utils.set_random_seed(1)
    first, _ = run_training(Recipe(epochs=2), ToyKind(), tmp_path, verbose=0)
    again, record = run_training(Recipe(epochs=2), ToyKind(), tmp_path, verbose=0)
    assert record["epochs_run"] == 2 and record["epochs_run_this_session"] == 0
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_the_moving_average_is_what_is_kept(tmp_path: Path):
    keras.utils.set_random_seed(1)
    network, _ = run_training(Recipe(ema_decay=0.9), ToyKind(), tmp_path, verbose=0)
    assert (tmp_path / "ema.npz").is_file()
    best = max(h["val_string_acc"] for h in read_history(tmp_path / HISTORY))
    assert ToyKind().accuracy(network) == pytest.approx(best)


def test_progress_to_a_log_file_is_one_line_per_epoch(tmp_path: Path, capfd):
    # Captured output is no terminal, as a log file or a pipe is not: Keras's bar would write a
    # line per step there.
    keras.utils.set_random_seed(1)
    run_training(Recipe(epochs=2, steps_per_epoch=8), ToyKind(), tmp_path, verbose=1)
    lines = [line for line in capfd.readouterr().out.splitlines() if "loss" in line]
    assert len(lines) == 2, lines
