"""The comparison: one tiny run end to end (measure both kinds, learning-curve training, report)."""

import json
from pathlib import Path

import keras
import pytest

from kdetect.classifier.config import ClassifierConfig
from kdetect.classifier.model import build_classifier
from kdetect.cli import main
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.detector.config import ModelConfig
from kdetect.detector.model import build_detector
from kdetect.presets import ENGINE_PRESETS
from kdetect.research.compare import time_to
from kdetect.training.packaging import save_classifier_package
from kdetect.training.packaging import save_package


def test_time_to_target_reads_the_first_epoch_reaching_it():
    history = [{"epoch": 1, "val_string_acc": 0.5, "seconds": 10.0},
               {"epoch": 2, "val_string_acc": 0.991, "seconds": 20.0},
               {"epoch": 3, "val_string_acc": 0.999, "seconds": 30.0}]
    assert time_to(history, 0.99, 64) == {"epoch": 2, "images_seen": 128, "seconds": 20.0}
    assert time_to(history[:1], 0.99, 64) is None


@pytest.mark.slow  # trains both kinds for the learning curves
def test_compare_end_to_end(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(width_multiplier=0.125)
    detector = save_package(tmp_path / "detector", build_detector(cfg), cfg, {}, "tiny\n")
    ccfg = ClassifierConfig(backbone="small", length=2)
    weights = tmp_path / "c.weights.h5"
    build_classifier(ccfg).save_weights(str(weights))
    baseline = save_classifier_package(tmp_path / "baseline", weights, ccfg, {}, "tiny\n")

    l2 = renderer.load_config(renderer.preset_path("l2"))
    generate(DatasetSpec(config=l2, seed=1, count=32, tfrecord=True), tmp_path / "train")
    generate(DatasetSpec(config=l2, seed=2, count=8, tfrecord=True), tmp_path / "val")
    common = {"train_data": str(tmp_path / "train"), "val_data": str(tmp_path / "val"), "out_dir": "unused",
              "epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "val_images": 8, "warmup_steps": 1}
    (tmp_path / "cd.json").write_text(json.dumps({**common, "model": {"width_multiplier": 0.125}}))
    (tmp_path / "cb.json").write_text(json.dumps({**common, "model": {"backbone": "small", "length": 2}}))
    config = {"detector": str(detector), "baseline": str(baseline), "test_count": 6, "latency_repeats": 2,
              "realval": None, "curve_sizes": [16], "curve_detector": str(tmp_path / "cd.json"),
              "curve_baseline": str(tmp_path / "cb.json"), "out_dir": str(tmp_path / "out")}
    (tmp_path / "compare.json").write_text(json.dumps(config))

    assert main(["compare", str(tmp_path / "compare.json"), "--docs", str(tmp_path / "docs")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    base = results["baseline"]["accuracy"]["synthetic"]
    assert set(base) == set(ENGINE_PRESETS)
    # The fixed-length model reads two characters, so six-character answers are always wrong.
    assert base["gnuboard5"]["accuracy"] == 0.0
    assert all(v["accuracy"] == 0.0 for n, v in base["varlen"]["by_length"].items() if n != "2")
    assert all(results[m]["parameters"] > 0 and results[m]["latency_ms"] > 0 for m in ("detector", "baseline"))
    assert {r["kind"] for r in results["curve"]} == {"detector", "classifier"}
    assert all(r["train_images"] == 16 and r["epochs"] == 1 for r in results["curve"])
    report = (tmp_path / "docs" / "comparison.md").read_text()
    assert "| synthetic (6) | kcaptcha21 |" in report and "not reached" in report
    assert all((tmp_path / "docs" / "comparison" / f"{n}.png").stat().st_size > 2000
               for n in ("presets", "lengths", "curve"))


def test_the_default_comparison_config_is_found_from_any_folder(tmp_path, monkeypatch):
    from kdetect.presets import realval_dir
    from kdetect.research.compare import default_compare_config, load_compare_config

    monkeypatch.chdir(tmp_path)
    cc = load_compare_config(default_compare_config())
    assert Path(cc.curve_detector).is_file() and Path(cc.curve_baseline).is_file()
    assert cc.realval is None and realval_dir().is_absolute()
