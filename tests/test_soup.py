"""Weight averaging: the soup's weights are the mean, the greedy recipe keeps only what helps,
and packages that are different networks are refused."""

import dataclasses

import numpy as np
import pytest

from kdetect.cli import main
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.detector.config import ModelConfig
from kdetect.detector.model import build_detector
from kdetect.errors import ConfigError
from kdetect.package import load_package, read_training
from kdetect.training.packaging import lineage, save_package
from kdetect.training.soup import average_packages, greedy_soup, mean_weights


def package(path, seed: int, **cfg_changes):
    cfg = dataclasses.replace(ModelConfig(width_multiplier=0.125, batch_norm=False), **cfg_changes)
    detector = build_detector(cfg)
    rng = np.random.default_rng(seed)
    detector.set_weights([rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in detector.get_weights()])
    save_package(path, detector, cfg, {"val_string_accuracy": 0.5 + seed / 100}, "# test\n")
    return detector.get_weights()


def test_the_soup_is_the_mean_of_its_packages(tmp_path):
    a = package(tmp_path / "a", 1, score_threshold=0.2)
    b = package(tmp_path / "b", 2, score_threshold=0.4)  # thresholds may differ: only decoding uses them
    record = average_packages([tmp_path / "a", tmp_path / "b"], tmp_path / "soup")
    soup, cfg = load_package(tmp_path / "soup")
    for got, x, y in zip(soup.get_weights(), a, b):
        np.testing.assert_allclose(got, (x + y) / 2, rtol=1e-6, atol=1e-8)
    assert cfg.score_threshold == 0.2
    assert read_training(tmp_path / "soup") == record
    assert [p["training"]["val_string_accuracy"] for p in record["averaged_from"]] == [0.51, 0.52]
    assert "weight average of 2" in lineage({"init_from": {"package": str(tmp_path / "soup"), "training": record}})


@pytest.mark.slow  # builds and saves several packages: ~10 s
def test_a_soup_of_runs_on_different_alphabets_chooses_from_all_of_them(tmp_path):
    package(tmp_path / "digits", 1, alphabets=("0123456789",))
    package(tmp_path / "digits2", 2, alphabets=("0123456789",))
    package(tmp_path / "mixed", 3, alphabets=("0123456789", "abc"))
    average_packages([tmp_path / "digits", tmp_path / "digits2"], tmp_path / "same")
    assert load_package(tmp_path / "same")[1].alphabets == ("0123456789",)
    average_packages([tmp_path / "digits", tmp_path / "mixed"], tmp_path / "both")
    assert load_package(tmp_path / "both")[1].alphabets == ("0123456789", "0123456789", "abc")
    assert "`0123456789` x2, `abc` x1" in (tmp_path / "both" / "MODEL_CARD.md").read_text()


def test_different_networks_are_refused(tmp_path):
    package(tmp_path / "a", 1)
    package(tmp_path / "wide", 2, width_multiplier=0.25)
    with pytest.raises(ConfigError, match="different networks"):
        average_packages([tmp_path / "a", tmp_path / "wide"], tmp_path / "soup")
    with pytest.raises(ConfigError, match="at least two"):
        average_packages([tmp_path / "a"], tmp_path / "soup")
    with pytest.raises(ConfigError, match="--val"):
        average_packages([tmp_path / "a", tmp_path / "a"], tmp_path / "soup", greedy=True)
    assert not (tmp_path / "soup").exists()


def test_greedy_keeps_only_ingredients_that_help():
    # Accuracy peaks at weights 0: +1 and -1 average to it; 5 would drag the mean away.
    ingredients = [[np.array([5.0])], [np.array([1.0])], [np.array([-1.0])]]
    kept, best = greedy_soup(ingredients, lambda w: -abs(float(w[0][0])))
    assert kept == [1, 2] and best == 0.0
    np.testing.assert_allclose(mean_weights([ingredients[k] for k in kept])[0], [0.0])


@pytest.mark.slow  # renders its held-out captchas and reads them
def test_soup_command_tunes_on_held_out_data(tmp_path, capsys):
    config = renderer.load_config(renderer.preset_path("gnuboard5"))
    generate(DatasetSpec(config=config, seed=5, count=16, tfrecord=True), tmp_path / "val")
    package(tmp_path / "a", 1)
    package(tmp_path / "b", 2)
    assert main(["soup", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "soup"),
                 "--val", str(tmp_path / "val"), "--greedy"]) == 0
    record = read_training(tmp_path / "soup")
    # What it records is what the soup it wrote reads on those captchas.
    from kdetect.training.detector import string_accuracy
    from kdetect.training.loop import validation_arrays

    detector, cfg = load_package(tmp_path / "soup")
    images, texts = validation_arrays(str(tmp_path / "val"), cfg, 16)
    assert record["val_images"] == 16
    assert record["val_string_accuracy"] == pytest.approx(string_accuracy(detector, images, texts, cfg))
    assert 1 <= len(record["averaged_from"]) <= 2
    assert "wrote" in capsys.readouterr().out
    assert main(["soup", str(tmp_path / "a"), "--out", str(tmp_path / "x")]) == 2


def test_the_lineage_goes_through_a_soup_to_every_run_it_came_from():
    scratch = {"train_images": 200000, "train_preset": "train-mix", "train_seed": 1, "epochs_run": 14,
               "steps_per_epoch": 500, "batch_size": 32, "seed": 0, "val_string_accuracy": 0.911}
    child = lambda seed: {"train_images": 100000, "train_preset": "train-mix", "train_seed": 3,  # noqa: E731
                          "epochs_run": 3, "steps_per_epoch": 500, "batch_size": 32, "seed": seed,
                          "val_string_accuracy": 0.9, "init_from": {"package": "shipped", "training": scratch}}
    soup = {"averaged_from": [{"package": "a", "training": child(5)}, {"package": "b", "training": child(6)}],
            "val_string_accuracy": 0.92}
    text = lineage({"init_from": {"package": "soup", "training": soup}})
    lines = text.splitlines()
    assert lines[0].startswith("- Continued from soup, the weight average of 2 packages")
    assert [line.strip()[:4] for line in lines[1:]] == ["- a:", "- Co", "- b:", "- Co"]
    assert text.count("Continued from shipped: 200,000 images of `train-mix` seed 1, 14 epochs") == 2
    assert "seed 6, held-out accuracy 0.9" in text and lines[2].startswith("    - ")
    del scratch["epochs_run"]
    scratch["epochs_run_this_session"] = 8  # an older record: only the last session's count
    assert "seed 1, 8 epochs of 500 steps x 32 (its last session only), seed 0" in lineage({"init_from": {"package": "shipped", "training": scratch}})


def test_a_soup_reached_twice_is_expanded_once_and_unnamed_data_shows_its_folder():
    leaf = {"train_images": 10, "train_data": "data/x", "train_seed": 1, "epochs_run": 1, "steps_per_epoch": 5,
            "batch_size": 2, "seed": 0, "val_string_accuracy": 0.5}
    first = {"averaged_from": [{"package": "a", "training": leaf}, {"package": "b", "training": leaf}],
             "val_string_accuracy": 0.6}
    child = lambda seed: dict(leaf, seed=seed, init_from={"package": "soup-1", "training": first})  # noqa: E731
    text = lineage({"init_from": {"package": "soup-2", "training": {
        "averaged_from": [{"package": "c", "training": child(3)}, {"package": "d", "training": child(4)}]}}})
    assert text.count("Continued from soup-1") == 2
    assert text.count("- a: 10 images of `data/x` seed 1") == 1
    assert text.count("(its ingredients are listed above)") == 1
    named = dict(leaf, train_preset="train-mix")
    assert "- a: 10 images of `train-mix` (data/x) seed 1" in lineage({"init_from": {"package": "soup-3", "training": {
        "averaged_from": [{"package": "a", "training": named}, {"package": "b", "training": named}]}}})
