"""--out never costs the user a file: a folder is replaced only when kdetect wrote all of it
(or --force says so), and siblings such as X.old are never touched."""

import json
import os
from pathlib import Path

import pytest

from kdetect.cli import main
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.errors import OutputError
from kdetect.fsutil import MARKER, replace_dir, staging_dir
from kdetect.serving.export import converter_installed


def user_files(tmp_path: Path, out: Path) -> dict[Path, str]:
    """The reproduction from the report: a document in --out, another in the sibling out.old."""
    files = {out / "report.docx": "x\n", tmp_path / f"{out.name}.old" / "important.txt": "y\n"}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def assert_kept(files: dict[Path, str]) -> None:
    for path, text in files.items():
        assert path.read_text() == text, f"{path} was lost or changed"


def test_replace_dir_swaps_its_own_output_and_refuses_anything_else(tmp_path):
    out = tmp_path / "X"
    for text in ("first", "second"):
        staged = staging_dir(out)
        (staged / "a.txt").write_text(text)
        replace_dir(staged, out)
    assert (out / "a.txt").read_text() == "second"
    assert json.loads((out / MARKER).read_text())["entries"] == ["a.txt"]
    (out / "notes.txt").write_text("mine")  # the user adds a file to kdetect's folder
    staged = staging_dir(out)
    with pytest.raises(OutputError, match="notes.txt.*--force"):
        replace_dir(staged, out)
    assert (out / "notes.txt").read_text() == "mine"
    replace_dir(staged, out, force=True)
    assert not (out / "notes.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["X"]


def test_a_package_written_before_the_marker_is_still_replaceable(tmp_path, untrained_package):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for path in untrained_package(0).iterdir():
        if path.name != MARKER:
            (legacy / path.name).write_bytes(path.read_bytes())
    assert main(["compact", str(untrained_package(1)), "--out", str(legacy)]) == 0
    assert (legacy / MARKER).is_file()


def test_a_file_as_out_is_refused(tmp_path, untrained_package, capsys):
    target = tmp_path / "model"
    target.write_text("not a folder")
    assert main(["compact", str(untrained_package(0)), "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "not a folder"


@pytest.mark.parametrize("command", [
    "compact", "export-tflite", "export-saved_model", "soup",
    pytest.param("export-tfjs", marks=[pytest.mark.skipif(not converter_installed(), reason="tensorflowjs is not installed"),
                                  pytest.mark.slow]),  # the converter alone takes ~10 s
])
def test_package_commands_keep_the_users_files(tmp_path, untrained_package, command, capsys):
    out = tmp_path / "X"
    files = user_files(tmp_path, out)
    a, b = str(untrained_package(0)), str(untrained_package(1))
    args = {"compact": ["compact", a], "export-tflite": ["export", "tflite", "--model", a],
            "export-saved_model": ["export", "saved_model", "--model", a], "soup": ["soup", a, b],
            "export-tfjs": ["export", "tfjs", "--model", a]}[command]
    assert main([*args, "--out", str(out)]) == 2
    assert "did not write (report.docx)" in capsys.readouterr().err
    assert_kept(files)
    assert sorted(p.name for p in out.iterdir()) == ["report.docx"]
    # --force replaces X itself, and still never the sibling.
    assert main([*args, "--out", str(out), "--force"]) == 0
    assert not (out / "report.docx").exists()
    assert_kept({k: v for k, v in files.items() if k.parent != out})


def test_train_and_finetune_refuse_a_model_folder_of_the_users_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    files = user_files(tmp_path, run / "model")
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"train_data": "nowhere", "val_data": "nowhere", "out_dir": str(run)}))
    assert main(["train", str(config)]) == 2
    assert main(["finetune", str(tmp_path), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("did not write (report.docx)") == 2
    assert_kept(files)


def test_generate_never_writes_over_a_lone_config_of_the_users(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / "config.json").write_text("my own settings")
    assert main(["generate", "--preset", "l2", "--count", "2", "--out", str(out)]) == 2
    assert "not empty and is not a kdetect dataset" in capsys.readouterr().err
    assert (out / "config.json").read_text() == "my own settings"


@pytest.mark.slow  # renders every preset
def test_demo_keeps_what_the_user_kept_in_its_preset_folders(tmp_path, untrained_package, capsys):
    out = tmp_path / "demo"
    files = user_files(tmp_path, out / "gnuboard5")
    args = ["demo", "--out", str(out), "--count", "1", "--seed", "3", "--model", str(untrained_package(0))]
    assert main(args) == 2
    assert "did not write (report.docx)" in capsys.readouterr().err
    assert_kept(files)
    (out / "gnuboard5" / "report.docx").unlink()
    os.rmdir(out / "gnuboard5")
    assert main(args) == 0 and main(args) == 0  # its own output it replaces, run after run
    assert_kept({k: v for k, v in files.items() if k.parent.name != "gnuboard5"})
    assert len(list((out / "varlen").glob("*.jpg"))) == 1


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Gnuboard captchas: TFRecords to train on and validate with, and a labelled folder as a site gives."""
    root = tmp_path_factory.mktemp("tiny")
    config = renderer.load_config(renderer.preset_path("gnuboard5"))
    generate(DatasetSpec(config=config, seed=1, count=16, tfrecord=True), root / "train")
    generate(DatasetSpec(config=config, seed=2, count=8, tfrecord=True), root / "val")
    generate(DatasetSpec(config=config, seed=3, count=10), root / "site")
    return root


@pytest.mark.slow  # renders and trains
def test_a_finished_training_run_keeps_the_users_files_in_its_folder_and_beside_it(tiny_data, tmp_path):
    run = tmp_path / "run"
    files = user_files(tmp_path, run)
    config = tmp_path / "train.json"
    config.write_text(json.dumps({
        "train_data": str(tiny_data / "train"), "val_data": str(tiny_data / "val"), "out_dir": str(run),
        "model": {"width_multiplier": 0.125}, "epochs": 1, "steps_per_epoch": 1, "batch_size": 8, "val_images": 8,
        "warmup_steps": 1}))
    assert main(["train", str(config)]) == 0
    assert (run / "model" / "detector.weights.h5").is_file()
    assert_kept(files)


@pytest.mark.slow  # renders and trains
def test_a_finished_finetune_keeps_the_users_files_in_its_folder_and_beside_it(tiny_data, tmp_path):
    out = tmp_path / "ft"
    files = user_files(tmp_path, out)
    args = ["finetune", str(tiny_data / "site"), "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1",
            "--batch-size", "4", "--val-fraction", "0.3"]
    assert main(args) == 0
    assert (out / "model" / "detector.weights.h5").is_file()
    assert_kept(files)


@pytest.mark.slow  # renders
def test_generate_keeps_the_users_files_in_its_folder_and_beside_it(tmp_path, capsys):
    out = tmp_path / "data"
    files = user_files(tmp_path, out)
    args = ["generate", "--preset", "l2", "--count", "2", "--out", str(out)]
    assert main(args) == 2
    assert "not empty and is not a kdetect dataset" in capsys.readouterr().err
    assert_kept(files)
    assert [p.name for p in out.iterdir()] == ["report.docx"]
    (out / "report.docx").unlink()
    assert main(args) == 0 and main(args) == 0  # its own dataset it finishes, run after run
    assert_kept({k: v for k, v in files.items() if k.parent != out})
    assert len((out / "labels.tsv").read_text().splitlines()) == 2


def test_a_failed_write_leaves_the_old_folder_and_no_staging_folder(tmp_path):
    from kdetect.fsutil import staged_output

    target = tmp_path / "pkg"
    with staged_output(target) as staged:
        (staged / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with staged_output(target) as staged:
            (staged / "a.txt").write_text("second")
            raise RuntimeError("the export failed half-way")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
