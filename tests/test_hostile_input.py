"""Issue 18, items 2 to 10: each defect found by trying kdetect as a hostile user would, one test
per defect, each failing before its fix."""

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hostile import gif_bomb, load_in_child, png_bomb
from kdetect import images
from kdetect.cli import main
from kdetect.errors import ConfigError, DatasetError, InvalidImageError
from kdetect.images import load_image
from kdetect.readings import Reading
from kdetect.serving.evaluate import evaluate
from kdetect.serving.solver import Solver


@pytest.fixture(scope="module")
def package(untrained_package):
    return untrained_package(0)


@pytest.fixture(scope="module")
def captcha() -> np.ndarray:
    """Dark strokes on light paper, 160x60, as a captcha is."""
    rng = np.random.default_rng(18)
    rgb = np.full((60, 160, 3), 245, np.uint8)
    rgb[15:45, 30:130] = rng.integers(0, 90, (30, 100, 3))
    return rgb


def save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


# 2. Memory: the declared size is checked before decoding; files are read with a cap.

def test_a_small_png_declaring_25_megapixels_is_refused_without_decoding_it(monkeypatch):
    from PIL import ImageFile

    bomb = png_bomb(5000, 5000)
    assert len(bomb) < 100_000
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size))
    with pytest.raises(InvalidImageError, match="5000x5000 pixels, over the limit of 4,000,000"):
        load_image(bomb)
    assert decoded == [], "the header alone must refuse it"


def test_a_400_megapixel_png_and_a_gif_header_are_invalid_images_not_pils_error():
    with pytest.raises(InvalidImageError, match="decompression bomb"):
        load_image(png_bomb(20000, 20000))
    with pytest.raises(InvalidImageError):
        load_image(gif_bomb(60000, 60000))


def test_solve_reports_a_bomb_and_still_reads_the_next_file(package, captcha, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(20000, 20000))
    good = save(tmp_path / "good.png", captcha)
    assert main(["solve", str(bomb), str(good), "--model", str(package)]) == 1
    out, err = capsys.readouterr()
    assert "bomb.png" in err and "decompression bomb" in err
    assert out.startswith(f"{good}\t")


def test_eval_counts_a_bomb_as_unreadable_and_goes_on(package, captcha, tmp_path):
    save(tmp_path / "a.png", captcha)
    (tmp_path / "bomb.png").write_bytes(png_bomb(20000, 20000))
    (tmp_path / "labels.tsv").write_text("a.png\t123456\nbomb.png\t654321\n")
    result = evaluate(Solver(package), tmp_path)
    assert result["images"] == 2
    assert len(result["invalid"]) == 1 and "bomb.png" in result["invalid"][0]


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    # Sparse: 3 GB on paper, no disk; reading it whole would take 3 GB of memory and seconds.
    huge = tmp_path / "huge.png"
    with huge.open("wb") as f:
        f.write(png_bomb(100, 100))
        f.truncate(3 << 30)
    opened = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    with pytest.raises(InvalidImageError, match="over 33,554,432 bytes"):
        load_image(huge)
    assert huge not in opened, "its size on disk must refuse it before a byte is read"

    class Counting(io.BytesIO):
        def __init__(self, data):
            super().__init__(data)
            self.asked = []

        def read(self, size=-1):
            self.asked.append(size)
            return super().read(size)

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    stream = Counting(b"\x89PNG" + bytes(5000))
    with pytest.raises(InvalidImageError, match="over 1,000 bytes"):
        load_image(stream)
    assert stream.asked == [1001], "a file object is read up to the cap, not whole"


def test_the_limits_can_be_changed_and_a_bad_setting_is_named(captcha, monkeypatch):
    monkeypatch.setenv("KDETECT_MAX_PIXELS", "5000")
    with pytest.raises(InvalidImageError, match="160x60 pixels, over the limit of 5,000.*KDETECT_MAX_PIXELS"):
        load_image(captcha)
    monkeypatch.setenv("KDETECT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="KDETECT_MAX_PIXELS='lots' is not a whole number"):
        load_image(captcha)
    monkeypatch.delenv("KDETECT_MAX_PIXELS")
    monkeypatch.setattr(images, "MAX_PIXELS", 30_000_000)
    assert load_image(png_bomb(5000, 5000, rows=5000)).shape == (5000, 5000, 3)


def test_a_bomb_stays_small_in_memory(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(13000, 13000))
    code, out, err, peak_mb = load_in_child(bomb)
    assert code == 0 and out.startswith("refused"), err
    assert peak_mb < 300


# 3. 16-bit images are scaled to 8 bits, not clipped at 255.

def test_16_bit_images_read_as_their_8_bit_originals(captcha, package, tmp_path):
    gray8 = np.asarray(Image.fromarray(captcha).convert("L"))
    gray16 = gray8.astype(np.uint16) * 257
    png16 = tmp_path / "c16.png"
    Image.fromarray(gray16).save(png16)
    assert Image.open(png16).mode == "I;16"
    expected = load_image(gray8)
    np.testing.assert_array_equal(load_image(png16), expected)
    np.testing.assert_array_equal(load_image(gray16), expected)
    np.testing.assert_array_equal(load_image(captcha.astype(np.uint16) * 257), captcha)
    # PIL's 32-bit "I" (how older PIL opened 16-bit PNGs) holding 16-bit values, and an int64
    # copy of an 8-bit image: each scaled by what its values are.
    np.testing.assert_array_equal(load_image(Image.fromarray(gray16.astype(np.int32))), expected)
    np.testing.assert_array_equal(load_image(gray8.astype(np.int64)), expected)
    solver = Solver(package)
    assert solver.read(png16) == solver.read(gray8)


# 4. `kdetect web --dir DIR` never runs npm in DIR.

def test_web_dir_is_only_served_and_npm_runs_only_in_web_with_ignore_scripts(tmp_path, monkeypatch, capsys):
    import kdetect.serving.web as web

    calls = []

    def recorded_run(cmd, **kw):
        calls.append((list(cmd), Path(kw.get("cwd", "."))))
        return type("Done", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(web.subprocess, "run", recorded_run)
    monkeypatch.setattr(web.shutil, "which", lambda name: f"/usr/bin/{name}")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html>")
    (site / "package.json").write_text(json.dumps({"name": "x", "scripts": {"preinstall": "touch pwned"}}))
    assert main(["web", "--dir", str(site), "--port", "0"]) == 2
    assert "TF.js is missing" in capsys.readouterr().err
    assert calls == [] and not (site / "pwned").exists()
    assert web.install_tfjs() == web.web_dir()
    (cmd, cwd), = calls
    assert cmd[1:3] == ["ci", "--ignore-scripts"] and cwd == web.web_dir()


# 5. A package's config is validated before anything is built from it.

def crafted(package: Path, tmp_path: Path, config: dict | None = None, glyphs: dict | None = None) -> Path:
    out = tmp_path / "crafted"
    out.mkdir(exist_ok=True)
    for f in package.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    if config:
        saved = json.loads((package / "config.json").read_text())
        (out / "config.json").write_text(json.dumps(saved | config))
    if glyphs is not None:
        (out / "glyphs.json").write_text(json.dumps(glyphs))
        (out / "glyphs.weights.h5").write_bytes(b"")
    return out


@pytest.mark.parametrize("change, message", [
    ({"input_height": 20000, "input_width": 20000}, "input_height must be a whole number of pixels from 16 to 1024"),
    ({"input_width": 0}, "input_width must be"),
    ({"strides": [4, 8]}, "strides must be \\[8, 16\\]"),
    ({"anchors": [[-3, 5]] * 6}, "anchor \\[-3.0, 5.0\\]"),
    ({"anchors": "abc"}, "anchors must hold finite numbers"),
    ({"anchors_per_scale": 0}, "anchors_per_scale must be 1 to 9"),
    ({"charset": ""}, "charset must hold 1 to 256"),
    ({"charset": "ab\tc"}, "printable characters"),
    ({"score_threshold": 5}, "score_threshold must lie between 0 and 1"),
    ({"nms_iou": float("nan")}, "nms_iou must be a number"),
    ({"max_boxes": 100000}, "max_boxes must be 1 to 256"),
    ({"width_multiplier": 1e6}, "width_multiplier must be in"),
    ({"input_height": "64"}, "input_height must be a whole number, not '64'"),
    ({"batch_norm": "yes"}, "batch_norm must be true or false"),
])
def test_a_crafted_detector_config_is_refused_before_building(package, tmp_path, change, message, monkeypatch):
    from kdetect.detector import model as detector_model

    built = []
    monkeypatch.setattr(detector_model, "build_detector", lambda cfg: built.append(cfg))
    with pytest.raises(ConfigError, match=message):
        Solver(crafted(package, tmp_path, change)).solve(np.zeros((60, 160, 3), np.uint8))
    assert built == []


def test_a_crafted_glyph_reader_config_is_refused_before_building(package, tmp_path):
    from kdetect.glyphs.config import GlyphConfig

    glyphs = json.loads(GlyphConfig().to_json()) | {"input_height": 20000, "input_width": 20000}
    with pytest.raises(ConfigError, match="glyph reader's input_height"):
        Solver(crafted(package, tmp_path, glyphs=glyphs)).solve(np.zeros((60, 160, 3), np.uint8))


def test_weights_that_hold_more_than_the_network_are_refused(package, tmp_path):
    import h5py

    model = crafted(package, tmp_path)
    with h5py.File(model / "detector.weights.h5", "a") as f:
        kernels = []
        f.visititems(lambda name, item: kernels.append(name) if isinstance(item, h5py.Dataset) else None)
        # A kernel Keras will read, now 4 GB of zeros on paper and a few bytes on disk.
        del f[kernels[0]]
        f.create_dataset(kernels[0], shape=(1 << 30,), dtype="f4", chunks=(1 << 20,), compression="gzip")
    with pytest.raises(ConfigError, match="far more than the network"):
        Solver(model).solve(np.zeros((60, 160, 3), np.uint8))


# 6. The conversion cache is verified.

@pytest.mark.parametrize("where", ["the cache", "the package"])
def test_flipped_bits_in_a_conversion_are_caught_and_converted_again(package, captcha, tmp_path, where):
    import shutil

    from kdetect.serving import lite

    package = shutil.copytree(package, tmp_path / "model")
    if where == "the cache":  # a package from before packages carried their TFLite files
        for name in ("lite.json", "model.tflite"):
            (package / name).unlink()
    solver = Solver(package)
    solver.load()
    expected = solver.reader._infer(captcha[None])
    path = lite.cache_path(package) if where == "the cache" else package / "model.tflite"
    damaged = bytearray(path.read_bytes())
    rng = np.random.default_rng(50)
    # Fifty bits in the weights (the flatbuffer's second half): still a valid model, a wrong one.
    for at in rng.choice(np.arange(len(damaged) // 2, len(damaged) - 64), 50, replace=False):
        damaged[at] ^= 1 << int(rng.integers(0, 8))
    path.write_bytes(bytes(damaged))
    again = Solver(package)
    again.load()
    if where == "the cache":
        assert path.read_bytes() != bytes(damaged), "the damaged entry was used, not converted again"
    else:  # the package is the user's: left as it is, and converted into the cache instead
        assert lite.packaged_lite(package)[0] is None and lite.cache_path(package).is_file()
    for got, want in zip(again.reader._infer(captcha[None]), expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


# 7. generate and its --out folder.

def test_a_rejected_config_leaves_the_out_folder_free_and_names_the_users_file(make_config, tmp_path, capsys):
    out = tmp_path / "data"
    bad = make_config("l2", length=40, fit=True, width=100)
    assert main(["generate", "--config", str(bad), "--count", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "never fits" in err and str(out / "config.json") not in err
    assert not out.exists() or not any(out.iterdir())
    good = make_config("l2")
    assert main(["generate", "--config", str(good), "--count", "2", "--out", str(out)]) == 0


@pytest.mark.parametrize("name", ["config.json", "fonts.json", "dataset.json"])
def test_generate_leaves_a_lone_file_of_the_users_alone(tmp_path, name, capsys):
    out = tmp_path / "data"
    out.mkdir()
    (out / name).write_text("mine")
    assert main(["generate", "--preset", "l2", "--count", "2", "--out", str(out)]) == 2
    assert "is not a kdetect dataset" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == [name] and (out / name).read_text() == "mine"


# 8. A kdetect error, one line, where a traceback was.

def test_bad_workers_and_a_file_as_out_are_named(tmp_path, capsys):
    assert main(["generate", "--preset", "l2", "--count", "2", "--workers", "-1", "--out", str(tmp_path / "d")]) == 2
    assert "workers must be at least 1" in capsys.readouterr().err
    target = tmp_path / "file"
    target.write_text("mine")
    for out in (target, target / "below"):
        assert main(["generate", "--preset", "l2", "--count", "2", "--out", str(out)]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kdetect: error:")]
        assert len(errors) == 1 and f"{target} is a file, not a folder" in errors[0]
    assert main(["finetune", str(tmp_path), "--out", str(target)]) == 2
    assert f"{target} is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_a_cp949_labels_file_names_the_encoding_fix(tmp_path, capsys):
    (tmp_path / "labels.tsv").write_bytes("a.png\t123\n캡차.png\t456\n".encode("cp949"))
    with pytest.raises(DatasetError, match="labels.tsv:2: not UTF-8 text.*iconv -f CP949 -t UTF-8"):
        evaluate(None, tmp_path)
    assert main(["eval", str(tmp_path)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_a_malformed_or_random_keras_file_is_a_config_error(tmp_path):
    from kdetect.classifier.config import ClassifierConfig

    package = tmp_path / "clf"
    package.mkdir()
    (package / "config.json").write_text(ClassifierConfig(width_multiplier=0.25).to_json())
    (package / "classifier.keras").write_bytes(os.urandom(4096))
    with pytest.raises(ConfigError, match="not a .keras archive"):
        Solver(package).solve(np.zeros((60, 160, 3), np.uint8))
    with zipfile.ZipFile(package / "classifier.keras", "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": 5, "config": None}))
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ConfigError, match="no model.weights.h5"):
        Solver(package).solve(np.zeros((60, 160, 3), np.uint8))


def test_a_closed_pil_image_is_an_invalid_image(tmp_path, captcha):
    image = Image.open(save(tmp_path / "c.png", captcha))
    image.close()
    with pytest.raises(InvalidImageError, match="closed"):
        load_image(image)


# 9. labels.tsv: a byte-order mark, spaces, answers the model cannot read.

class ReadsTheTruth:
    """A stand-in solver that reads every existing image right (the name says the answer)."""

    class config:
        charset = "0123456789abcdefghijklmnopqrstuvwxyz"

    def load(self):
        pass

    def read(self, path):
        return self.read_batch([path])[0]

    def read_batch(self, paths):
        for path in paths:
            if not Path(path).is_file():
                raise InvalidImageError(f"{path}: no such file")
        return [Reading(Path(p).stem.split("-")[1], 1.0, ()) for p in paths]


def test_a_bom_and_spaces_in_labels_are_accepted(tmp_path):
    for name in ("0-123", "1-456"):
        (tmp_path / f"{name}.png").write_bytes(b"")
    (tmp_path / "labels.tsv").write_text("\ufeff0-123.png\t123 \n 1-456.png \t 456\r\n")
    result = evaluate(ReadsTheTruth(), tmp_path)
    assert result["accuracy"] == 1.0 and result["invalid"] == [] and result["warnings"] == []


def test_answers_outside_the_charset_are_warned_about(package, captcha, tmp_path, capsys):
    save(tmp_path / "0-AB12.png", captcha)
    (tmp_path / "labels.tsv").write_text("0-AB12.png\tAB12\n")
    result = evaluate(ReadsTheTruth(), tmp_path)
    assert len(result["warnings"]) == 1 and "'AB'" in result["warnings"][0]
    assert main(["eval", str(tmp_path), "--model", str(package)]) == 0
    assert "kdetect: warning: 1 of 1 answers use characters the model never reads ('AB'" in capsys.readouterr().err


# 10. Smaller ones.

def test_tabs_and_line_breaks_in_file_names_cannot_forge_output_lines(package, captcha, tmp_path, capsys):
    names = ["a\tb.png", "c\nfake\t999999.png", "d\\e.png"]
    paths = [save(tmp_path / name, captcha) for name in names]
    assert main(["solve", *map(str, paths), "--model", str(package)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.count("\t") == 1 for line in lines)
    shown = [line.split("\t")[0].rsplit("/", 1)[1] for line in lines]
    assert shown == ["a\\tb.png", "c\\nfake\\t999999.png", "d\\\\e.png"]


def test_a_folder_is_not_reported_as_missing(tmp_path):
    with pytest.raises(InvalidImageError, match="is a folder, not an image file"):
        load_image(tmp_path)
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
