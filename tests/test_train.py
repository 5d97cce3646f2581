"""End to end on tiny data: generate, train a few steps, solve; resume after a kill; two replicas."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdetect.cli import main
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.detector.config import ModelConfig
from kdetect.serving.solver import Solver

# Every test here trains (on captchas the PHP renderer draws first): the quick run leaves them out.
pytestmark = pytest.mark.slow

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    config = renderer.load_config(renderer.preset_path("varlen"))
    generate(DatasetSpec(config=config, seed=1, count=96, tfrecord=True, shard_size=32), root / "train")
    generate(DatasetSpec(config=config, seed=2, count=16, tfrecord=True), root / "val")
    generate(DatasetSpec(config=config, seed=3, count=8), root / "test")
    return root


def train_config(data: Path, out: Path, **kw) -> Path:
    config = {"train_data": str(data / "train"), "val_data": str(data / "val"), "out_dir": str(out),
              "model": {"width_multiplier": 0.125}, "epochs": 1, "steps_per_epoch": 3, "batch_size": 8,
              "val_images": 16, "warmup_steps": 1, **kw}
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(config))
    return path


def test_generate_train_solve(data, tmp_path, capsys):
    config = train_config(data, tmp_path / "run")
    assert main(["train", str(config)]) == 0
    package = tmp_path / "run" / "model"
    saved = json.loads((package / "config.json").read_text())
    assert len(saved["anchors"]) == 6
    assert tuple(map(tuple, saved["anchors"])) != ModelConfig().anchors, "anchors come from k-means over the data"
    assert (package / "MODEL_CARD.md").read_text().startswith("# kdetect detector")
    assert saved["alphabets"] == ["0123456789"], "the decoder's alphabets are the training data's allowed_symbols"
    capsys.readouterr()
    image = next((data / "test").glob("*.jpg"))
    assert main(["solve", str(image), "--model", str(package)]) == 0
    assert capsys.readouterr().out.startswith(str(image))
    assert main(["eval", str(data / "test"), "--json", "--model", str(package)]) == 0
    result = json.loads(capsys.readouterr().out)
    truths = [json.loads(line) for line in (data / "test" / "annotations.jsonl").open()]
    solver = Solver(package)
    right = sum(solver.solve(data / "test" / t["file"]) == t["text"] for t in truths)
    assert result["images"] == 8 and result["accuracy"] == pytest.approx(right / 8)
    assert sum(r["images"] for r in result["by_length"].values()) == 8
    assert main(["eval", str(data / "test"), "--json", "--no-alphabet-guess", "--model", str(package)]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 8
    assert main(["demo", "--model", str(package), "--count", "1", "--seed", "5", "--out", str(tmp_path / "demo")]) == 0
    assert "of 4 read right (seeds 5 to 8" in capsys.readouterr().out
    # The best checkpoint can be packaged on its own (as while a long run is still going), then compacted.
    assert main(["train", str(config), "--package-best", str(tmp_path / "best")]) == 0
    assert json.loads((tmp_path / "best" / "training.json").read_text())["checkpoint"]
    assert main(["compact", str(tmp_path / "best"), "--out", str(tmp_path / "small")]) == 0
    assert json.loads((tmp_path / "small" / "config.json").read_text())["batch_norm"] is False
    assert main(["solve", str(image), "--model", str(tmp_path / "small")]) == 0


def test_a_continued_run_records_its_lineage(data, tmp_path):
    first = train_config(data, tmp_path / "first")
    assert main(["train", str(first)]) == 0
    second = train_config(data, tmp_path / "second", init_from=str(tmp_path / "first" / "model"), seed=1)
    assert main(["train", str(second)]) == 0
    parent = json.loads((tmp_path / "first" / "model" / "config.json").read_text())
    child = json.loads((tmp_path / "second" / "model" / "config.json").read_text())
    assert child["anchors"] == parent["anchors"], "a continued run keeps its parent's anchors"
    training = json.loads((tmp_path / "second" / "model" / "training.json").read_text())
    assert training["init_from"]["package"] == str(tmp_path / "first" / "model")
    assert training["init_from"]["training"]["seed"] == 0
    card = (tmp_path / "second" / "model" / "MODEL_CARD.md").read_text()
    assert f"Continued from {tmp_path / 'first' / 'model'}: 96 images of " in card


def test_packaging_before_the_first_epoch_says_so(data, tmp_path, capsys):
    config = train_config(data, tmp_path / "never-ran")
    assert main(["train", str(config), "--package-best", str(tmp_path / "best")]) != 0
    assert "after the first epoch" in capsys.readouterr().err


def test_killed_training_resumes_from_its_last_epoch(data, tmp_path):
    config = train_config(data, tmp_path / "run", epochs=3, steps_per_epoch=2)
    # Killed at a known point, not after a guessed delay: the moment the first epoch's backup is
    # written whole, the process kills itself, as a kill -9 there would.
    killed = (
        "import os, signal, sys, keras\n"
        "from kdetect.cli import main\n"
        "backup = keras.callbacks.BackupAndRestore.on_epoch_end\n"
        "def then_die(self, epoch, logs=None):\n"
        "    backup(self, epoch, logs)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "keras.callbacks.BackupAndRestore.on_epoch_end = then_die\n"
        f"sys.exit(main(['train', {str(config)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", killed], env=ENV, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (tmp_path / "run" / "model").exists()
    subprocess.run([sys.executable, "-m", "kdetect.cli", "train", str(config)], env=ENV, check=True, capture_output=True)
    summary = json.loads((tmp_path / "run" / "model" / "training.json").read_text())
    assert summary["epochs_run_this_session"] == 2
    assert summary["epochs_run"] == 3


def test_mirrored_strategy_on_two_logical_cpus(data, tmp_path):
    config = train_config(data, tmp_path / "run", batch_size=8)
    script = (
        "import tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from kdetect.training.detector import TrainConfig, train\n"
        f"s = train(TrainConfig.load({str(config)!r}), devices=['/cpu:0', '/cpu:1'], verbose=0)\n"
        "assert s['devices'] == 2, s\n"
        "print('replicas', s['devices'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "replicas 2" in proc.stdout


def test_train_glyphs_pairs_a_reader_with_a_detector(data, tmp_path, untrained_package, capsys):
    """kdetect train-glyphs: a few steps on crops, the thresholds tuned, a two-stage package that reads."""
    from kdetect.package import load_glyph_reader

    config = tmp_path / "glyphs.json"
    config.write_text(json.dumps({"train_data": str(data / "train"), "val_data": str(data / "val"),
                                  "out_dir": str(tmp_path / "run"), "epochs": 1, "steps_per_epoch": 3,
                                  "batch_size": 32, "val_images": 16, "warmup_steps": 1}))
    assert main(["train-glyphs", str(config), "--detector", str(untrained_package(0))]) == 0
    assert "two-stage package" in capsys.readouterr().out
    package = tmp_path / "run" / "model"
    reader, gcfg = load_glyph_reader(package)
    assert reader.count_params() > 100_000
    training = json.loads((package / "training.json").read_text())["glyph_reader"]
    # The thresholds it tuned are the ones the package reads with.
    assert (gcfg.proposal_threshold, gcfg.reject_threshold) == (training["proposal_threshold"], training["reject_threshold"])
    assert training["train_images"] == 96 and training["val_images"] == 16
    assert isinstance(Solver(package).solve(data / "test" / "0000000.jpg"), str)
    # Run again, the finished run is packaged anew, not trained again.
    assert main(["train-glyphs", str(config), "--detector", str(untrained_package(0))]) == 0
    assert len((tmp_path / "run" / "val_history.jsonl").read_text().splitlines()) == 1

    # A reader started from that package's starts with its weights, layer by layer.
    from kdetect.glyphs.model import build_glyph_reader
    from kdetect.training.glyphs import start_from

    fresh = build_glyph_reader(gcfg)
    start_from(fresh, str(package))
    for a, b in zip(fresh.get_weights(), reader.get_weights()):
        np.testing.assert_array_equal(a, b)
