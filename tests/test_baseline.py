"""The fixed-length classifier baseline: shapes, the whole-answer metric, refusing other lengths,
a package that loads and exports without kdetect, and a tiny train-then-evaluate run."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kdetect.charset import CHARSET, CHAR_TO_ID
from kdetect.classifier.config import BACKBONES, ClassifierConfig
from kdetect.classifier.model import build_classifier
from kdetect.cli import main
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.detector.config import ModelConfig
from kdetect.errors import ConfigError, DatasetError, LengthError
from kdetect.package import CLASSIFIER_MODEL as MODEL
from kdetect.package import package_kind
from kdetect.preprocess import preprocess
from kdetect.serving.export import converter_installed, export_tfjs
from kdetect.serving.solver import Solver
from kdetect.training.classifier import position_accuracy, usable_images, whole_answer_accuracy
from kdetect.training.packaging import save_classifier_package

CFG = ClassifierConfig(backbone="small", length=2)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_gives_one_softmax_per_position(backbone):
    model = build_classifier(ClassifierConfig(backbone=backbone, length=3))
    probs = np.asarray(model(np.random.default_rng(0).random((2, 64, 160, 3), np.float32), training=False))
    assert probs.shape == (2, 3, len(CHARSET))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_width_scales_the_small_backbone_and_is_refused_elsewhere():
    full, half = (build_classifier(ClassifierConfig(width_multiplier=w)) for w in (1.0, 0.5))
    assert half.get_layer("b4_conv2").kernel.shape[-1] == full.get_layer("b4_conv2").kernel.shape[-1] // 2
    assert half.count_params() < full.count_params() / 3
    assert half(np.zeros((1, 64, 160, 3), np.float32)).shape == (1, 2, len(CHARSET))
    with pytest.raises(ConfigError, match="small backbone only"):
        ClassifierConfig(backbone="mobilenetv2", width_multiplier=0.5).validate()
    with pytest.raises(ConfigError, match="width_multiplier"):
        ClassifierConfig(width_multiplier=0).validate()


def one_hot_answers(texts: list[str]) -> np.ndarray:
    probs = np.full((len(texts), len(texts[0]), len(CHARSET)), 0.1 / len(CHARSET), np.float32)
    for i, text in enumerate(texts):
        for j, ch in enumerate(text):
            probs[i, j, CHAR_TO_ID[ch]] = 0.9
    return probs


def test_whole_answer_accuracy_counts_answers_not_positions():
    probs = one_hot_answers(["12", "34", "56", "79"])  # the last is read "79"
    truths = ["12", "34", "56", "78"]
    assert whole_answer_accuracy(probs, truths, CHARSET) == 0.75
    assert position_accuracy(probs, truths, CHARSET) == 0.875
    # Half the glyphs right in every answer: Keras's per-position view says 0.5, no answer is right.
    assert whole_answer_accuracy(probs, ["13", "35", "57", "70"], CHARSET) == 0.0
    assert position_accuracy(probs, ["13", "35", "57", "70"], CHARSET) == 0.5
    # An answer of another length can never be read: it counts as wrong.
    assert whole_answer_accuracy(probs, ["12", "34", "56", "789"], CHARSET) == 0.75


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """An untrained 2-position package: enough to read *something* and check the plumbing."""
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("classifier")
    weights = root / "init.weights.h5"
    build_classifier(CFG).save_weights(str(weights))
    return save_classifier_package(root / "model", weights, CFG, {}, "test classifier\n")


@pytest.fixture(scope="module")
def captcha(tmp_path_factory):
    rgb = np.full((60, 160, 3), 250, np.uint8)
    rgb[15:45, 50:110] = np.random.default_rng(4).integers(0, 120, (30, 60, 3))
    path = tmp_path_factory.mktemp("img") / "c.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def test_solver_reads_a_classifier_package(package, captcha):
    path, rgb = captcha
    solver = Solver(package)
    reading = solver.read(path)
    assert solver.config.kind == "classifier" and package_kind(package) == "classifier"
    assert len(reading.text) == 2 and all(g.box is None for g in reading.glyphs)
    assert 0.0 < reading.confidence <= 1.0
    assert solver.read(rgb) == reading and solver.solve(path.read_bytes()) == reading.text
    assert [r.text for r in solver.read_batch([rgb, path], length=2)] == [reading.text] * 2


def test_a_length_the_model_was_not_built_for_is_refused(package, captcha):
    path, _ = captcha
    with pytest.raises(LengthError, match="exactly 2 characters; it cannot read 6-character"):
        Solver(package).read(path, length=6)
    with pytest.raises(LengthError, match="exactly 2 characters"):
        Solver(package).read_batch([path], length=3)


def test_saved_classifier_loads_and_exports_without_kdetect(package, captcha, tmp_path):
    _, rgb = captcha
    model = keras.saving.load_model(package / MODEL)  # safe mode, no custom_objects
    image = preprocess(rgb[None], CFG)  # outside the saved model, as for the detector
    expected = Solver(package).read(rgb)
    probs = np.asarray(model(image, training=False))
    assert "".join(CHARSET[i] for i in probs[0].argmax(-1)) == expected.text
    model.export(str(tmp_path / "saved"), verbose=False)
    exported = tf.saved_model.load(str(tmp_path / "saved"))  # kept: its variables die with it
    np.testing.assert_allclose(exported.serve(image).numpy(), probs, atol=1e-5)


def test_cli_solve_gives_null_boxes_for_the_classifier(package, captcha, tmp_path, capsys):
    path, _ = captcha
    assert main(["solve", str(path), "--json", "--model", str(package), "--draw", str(tmp_path / "d.png")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(line["glyphs"]) == 2 and all(g["box"] is None for g in line["glyphs"])
    assert (tmp_path / "d.png").is_file()


def test_detector_configs_without_kind_are_detectors(tmp_path):
    legacy = json.loads(ModelConfig().to_json())
    del legacy["kind"]
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    assert package_kind(tmp_path) == "detector"
    assert ModelConfig.load(tmp_path / "config.json").kind == "detector"
    (tmp_path / "config.json").write_text(json.dumps({"kind": "ocr"}))
    with pytest.raises(ConfigError, match="unknown model kind 'ocr'"):
        package_kind(tmp_path)


def test_classifier_config_round_trips_and_refuses_bad_values(tmp_path):
    (tmp_path / "c.json").write_text(CFG.to_json())
    assert ClassifierConfig.load(tmp_path / "c.json") == CFG
    with pytest.raises(ConfigError, match="unknown backbone 'resnet'"):
        ClassifierConfig.from_dict({"backbone": "resnet"})
    with pytest.raises(ConfigError, match="no pretrained weights"):
        ClassifierConfig.from_dict({"weights": "imagenet"})


def test_data_without_answers_of_the_length_is_refused():
    assert usable_images({"lengths": {"2": 10, "3": 5}}, "d", 2) == 10
    with pytest.raises(DatasetError, match="no answers of length 6 .*lengths 2: 10"):
        usable_images({"lengths": {"2": 10}}, "d", 6)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    l2 = renderer.load_config(renderer.preset_path("l2"))
    generate(DatasetSpec(config=l2, seed=1, count=64, tfrecord=True, shard_size=32), root / "train")
    generate(DatasetSpec(config=l2, seed=2, count=16, tfrecord=True), root / "val")
    generate(DatasetSpec(config=l2, seed=3, count=8), root / "test")
    generate(DatasetSpec(config=renderer.load_config(renderer.preset_path("varlen")), seed=4, count=8), root / "varlen")
    return root


def solved_right(package, folder) -> float:
    """The share of a generated folder's captchas that Solver reads right."""
    truths = [json.loads(line) for line in (folder / "annotations.jsonl").open()]
    solver = Solver(package)
    return sum(solver.solve(folder / t["file"]) == t["text"] for t in truths) / len(truths)


@pytest.mark.slow  # renders its data and trains
def test_train_a_few_steps_then_evaluate(data, tmp_path, capsys):
    config = {"train_data": str(data / "train"), "val_data": str(data / "val"), "out_dir": str(tmp_path / "run"),
              "model": {"backbone": "small", "length": 2}, "epochs": 1, "steps_per_epoch": 3, "batch_size": 8,
              "val_images": 16, "warmup_steps": 1}
    (tmp_path / "run.json").write_text(json.dumps(config))
    assert main(["train-classifier", str(tmp_path / "run.json")]) == 0
    package = tmp_path / "run" / "model"
    # The marker lists what kdetect wrote, so a later run may replace the folder (kdetect/fsutil.py).
    assert sorted(p.name for p in package.iterdir()) == [".kdetect-output.json", "MODEL_CARD.md", MODEL, "config.json",
                                                         "lite.json", "model.tflite", "training.json"]
    assert (package / "MODEL_CARD.md").read_text().startswith("# kdetect classifier baseline")
    training = json.loads((package / "training.json").read_text())
    # The package is the best epoch's network, and records what that epoch read.
    best = max(h["val_string_acc"] for h in map(json.loads, (tmp_path / "run" / "val_history.jsonl").open()))
    assert training["train_images_of_length"] == 64 and training["val_string_accuracy"] == pytest.approx(best)
    capsys.readouterr()

    assert main(["eval", str(data / "test"), "--json", "--model", str(package)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 8 and result["accuracy"] == pytest.approx(solved_right(package, data / "test"))
    # Variable length: every answer that is not 2 characters long is read wrong, and shows as such.
    assert main(["eval", str(data / "varlen"), "--json", "--model", str(package)]) == 0
    by_length = json.loads(capsys.readouterr().out)["by_length"]
    assert any(length != "2" for length in by_length)
    assert all(r["accuracy"] == 0.0 for length, r in by_length.items() if length != "2")


@pytest.mark.slow  # a TF.js conversion or several packages built: ~10 s each
@pytest.mark.skipif(not converter_installed(), reason="tensorflowjs is not installed (the export extra)")
def test_classifier_exports_to_tfjs(package, tmp_path):
    out = export_tfjs(package, tmp_path / "web-model", quantize="uint8")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["kind"] == "classifier" and meta["length"] == CFG.length and meta["charset"] == CFG.charset
    assert json.loads((out / "model.json").read_text())["format"] == "graph-model"
