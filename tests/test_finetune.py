"""Fine-tuning on labelled captchas: the detector's own boxes carry the answers' characters."""

import json
from pathlib import Path

import pytest

from kdetect.cli import main
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.detector.config import ModelConfig
from kdetect.errors import ConfigError, DatasetError
from kdetect.package import default_model_dir
from kdetect.readings import Glyph, Reading
from kdetect.serving.solver import Solver
from kdetect.training.finetune import FinetuneConfig, finetune, pseudo_boxes, split_items


def reading(*glyphs: tuple[str, tuple]) -> Reading:
    return Reading("".join(c for c, _ in glyphs), 0.9, tuple(Glyph(c, 0.9, box) for c, box in glyphs))


def test_pseudo_boxes_put_the_answer_on_the_boxes_in_x_order():
    # Read "1b3" where the answer is "4b3": the places are right, the first character wrong.
    r = reading(("b", (40, 2, 60, 50)), ("1", (10, 5, 30, 55)), ("3", (70, 0, 95, 48)))
    assert pseudo_boxes(r, "4b3") == [[10.0, 5.0, 30.0, 55.0, "4"], [40.0, 2.0, 60.0, 50.0, "b"],
                                      [70.0, 0.0, 95.0, 48.0, "3"]]


def test_pseudo_boxes_refuse_a_reading_of_another_length_or_without_places():
    r = reading(("1", (10, 5, 30, 55)), ("2", (40, 2, 60, 50)))
    assert pseudo_boxes(r, "123") is None
    assert pseudo_boxes(r, "1") is None
    assert pseudo_boxes(reading(("1", None), ("2", None)), "12") is None
    assert pseudo_boxes(reading(("1", (10, 5, 10, 55)), ("2", (40, 2, 60, 50))), "12") is None


def test_split_is_seeded_and_keeps_both_sides():
    items = [(Path(f"{i}.png"), str(i)) for i in range(10)]
    train, val = split_items(items, 0.2, seed=3)
    assert len(train) == 8 and len(val) == 2 and sorted(train + val) == items
    assert split_items(items, 0.2, seed=3) == (train, val)
    assert split_items(items, 0.2, seed=4) != (train, val)
    assert [len(s) for s in split_items(items[:2], 0.9, seed=0)] == [1, 1]
    with pytest.raises(DatasetError, match="at least 2"):
        split_items(items[:1], 0.2, seed=0)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    # Stand-in for a site's labelled captchas: images and labels.tsv, no boxes.
    folder = tmp_path_factory.mktemp("site") / "gnuboard5"
    config = renderer.load_config(renderer.preset_path("gnuboard5"))
    generate(DatasetSpec(config=config, seed=21, count=20), folder)
    return folder


@pytest.mark.slow  # trains, on captchas the renderer draws
def test_finetune_end_to_end(labelled, tmp_path, capsys, monkeypatch):
    import dataclasses

    import kdetect.training.detector

    # A few held-out images would pick thresholds by chance: a fine-tune must keep the start's.
    monkeypatch.setattr(kdetect.training.detector, "tune_thresholds",
                        lambda detector, images, texts, cfg: dataclasses.replace(cfg, score_threshold=0.9))
    out = tmp_path / "ft"
    code = main(["finetune", str(labelled), "--out", str(out), "--epochs", "1", "--steps-per-epoch", "2",
                 "--batch-size", "4", "--val-fraction", "0.25"])
    assert code == 0
    assert "model package" in capsys.readouterr().out
    made = json.loads((out / "data-train" / "manifest.json").read_text())
    held = json.loads((out / "data-val" / "manifest.json").read_text())
    # 15 to train, of which those the shipped model counts right carry boxes; all 5 validate.
    assert made["images"] + len(made["skipped_without_boxes"]) == 15 and made["images"] >= 10
    assert held["images"] == 5 and held["source"] == made["source"] == "labelled"
    answers = [line.split("\t")[1] for line in (labelled / "labels.tsv").read_text().splitlines()]
    cfg = ModelConfig.load(out / "model" / "config.json")
    start = ModelConfig.load(default_model_dir() / "config.json")
    assert cfg.alphabets == ("".join(sorted(set("".join(answers)))),)
    assert (cfg.score_threshold, cfg.nms_iou, cfg.anchors) == (start.score_threshold, start.nms_iou, start.anchors)
    card = (out / "model" / "MODEL_CARD.md").read_text()
    assert "labelled captchas" in card and "Never trained on real captchas" not in card
    assert len(Solver(out / "model").read(labelled / (labelled / "labels.tsv").read_text().split("\t")[0]).text) >= 1


@pytest.mark.slow  # its captchas are drawn by the PHP renderer
def test_finetune_refuses_bad_input(labelled, tmp_path):
    with pytest.raises(DatasetError, match="labels.tsv"):
        finetune(None, [tmp_path], tmp_path / "ft")
    site = tmp_path / "site"
    site.mkdir()
    rows = (labelled / "labels.tsv").read_text().splitlines()[:2]
    for row in rows:
        name = row.split("\t")[0]
        (site / name).write_bytes((labelled / name).read_bytes())
    (site / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (site / "labels.tsv").write_text("\n".join(rows) + "\nbroken.png\t111111\n")
    with pytest.raises(DatasetError, match="broken.png"):
        finetune(None, [site], tmp_path / "ft2", FinetuneConfig(val_fraction=0.34, seed=1))
    assert not (tmp_path / "ft2" / "data-train").exists() and not (tmp_path / "ft2" / "data-val").exists()
    assert not [p for p in (tmp_path / "ft2").glob(".*")], "no half-written dataset is left behind"
    with pytest.raises(ConfigError, match="between 0 and 1"):
        finetune(None, [labelled], tmp_path / "ft3", FinetuneConfig(val_fraction=1.0))
    with pytest.raises(ConfigError, match="at least 1"):
        finetune(None, [labelled], tmp_path / "ft3", FinetuneConfig(epochs=0))


@pytest.mark.slow  # its captchas are drawn by the PHP renderer
def test_finetune_needs_a_detector(labelled, tmp_path):
    classifier = tmp_path / "clf"
    classifier.mkdir()
    (classifier / "config.json").write_text(json.dumps({"kind": "classifier"}))
    with pytest.raises(ConfigError, match="not a detector"):
        finetune(classifier, [labelled], tmp_path / "ft")


@pytest.mark.slow  # its captchas are drawn by the PHP renderer
def test_no_boxes_at_all_is_an_error_and_leaves_nothing(labelled, tmp_path):
    from kdetect.training.finetune import labelled_items, write_dataset

    class BlindReader:
        model_dir = Path("blind")

        def read_batch(self, images):
            return [Reading("", 0.0, ()) for _ in images]

    items, alphabets = labelled_items([labelled])
    with pytest.raises(DatasetError, match="none of the 20 labelled images got boxes"):
        write_dataset(BlindReader(), items, tmp_path / "data", alphabets, True, seed=0)
    assert list(tmp_path.iterdir()) == []
    # For validation the same images are kept, without boxes.
    made = write_dataset(BlindReader(), items, tmp_path / "val", alphabets, False, seed=0)
    assert made["images"] == 20 and (tmp_path / "val" / "manifest.json").is_file()
