"""The Solver's inputs: every supported image form reads the same; bad inputs raise InvalidImageError."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from kdetect.cli import main
from kdetect.errors import ConfigError, InvalidImageError
from kdetect.images import load_image
from kdetect.serving.solver import Solver


@pytest.fixture(scope="module")
def package(untrained_package):
    return untrained_package(0)


@pytest.fixture(scope="module")
def captcha(tmp_path_factory):
    rng = np.random.default_rng(3)
    rgb = np.full((60, 160, 3), 250, np.uint8)
    rgb[15:45, 30:130] = rng.integers(0, 120, (30, 100, 3))
    path = tmp_path_factory.mktemp("img") / "c.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def test_every_input_form_gives_the_same_reading(package, captcha):
    path, rgb = captcha
    solver = Solver(package)
    expected = solver.read(path)
    assert expected.text  # the low threshold makes even an untrained model read glyphs
    rgba = np.concatenate([rgb, np.full((60, 160, 1), 255, np.uint8)], -1)
    forms = [str(path), path.read_bytes(), open(path, "rb"), Image.open(path), rgb, rgba, rgb / 255.0,
             rgb.astype(np.float32)]
    for form in forms:
        assert solver.read(form) == expected, type(form)
    assert solver.solve(rgb) == expected.text


def test_gray_jpeg_and_gif_inputs_are_read(package, captcha):
    path, rgb = captcha
    solver = Solver(package)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    for fmt in ("JPEG", "GIF", "PNG"):
        buf = io.BytesIO()
        Image.fromarray(gray).save(buf, format=fmt)
        # Read as the file's own pixels are, gray spread to three channels.
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
        assert solver.read(buf.getvalue()) == solver.read(np.repeat(decoded[..., None], 3, -1)), fmt
    assert solver.read(gray).text == solver.read(gray[..., None]).text
    other_size = np.asarray(Image.fromarray(rgb).resize((200, 90)))
    readings = solver.read_batch([rgb, other_size, rgb])
    assert len(readings) == 3 and readings[0].text == readings[2].text
    # Same image, same batch: the same reading up to float rounding (threaded kernels vary the order).
    assert readings[0].confidence == pytest.approx(readings[2].confidence, rel=1e-4)
    np.testing.assert_allclose([g.box for g in readings[0].glyphs], [g.box for g in readings[2].glyphs], atol=1e-3)


@pytest.mark.parametrize("bad, reason", [
    (b"", "empty"),
    (b"this is not a picture", "not an image"),
    (np.zeros((4, 4, 2), np.uint8), "not an image"),
    (np.zeros((0, 10, 3), np.uint8), "no pixels"),
    (np.full((5, 5), np.nan), "NaN"),
    (12345, "cannot read an image from a int"),
    ("/nonexistent/captcha.jpg", "no such file"),
])
def test_bad_inputs_raise_a_clear_error(bad, reason):
    with pytest.raises(InvalidImageError, match=reason):
        load_image(bad)


def test_truncated_jpeg_is_reported(captcha):
    path, rgb = captcha
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        load_image(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_missing_model_package_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not a kdetect model package"):
        Solver(tmp_path).solve(np.zeros((60, 160, 3), np.uint8))


def test_cli_reports_bad_files_continues_and_exits_nonzero(package, captcha, tmp_path, capsys):
    path, _ = captcha
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    code = main(["solve", str(broken), str(path), "--json", "--model", str(package), "--draw", str(tmp_path / "d.png")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "broken.jpg" in err
    line = json.loads(out.strip().splitlines()[-1])
    # The CLI prints the reading's own JSON form, which a server answers with too.
    assert line == {"file": str(path), **Solver(package).read(path).to_json()}
    assert (tmp_path / "d.png").is_file()


def test_a_reading_in_json_rounds_what_no_one_reads_and_keeps_a_missing_box_null():
    import kdetect

    reading = kdetect.Reading("7a", 0.123456, (kdetect.Glyph("7", 0.987654, (1.04, 2.0, 30.26, 40.0)),
                                               kdetect.Glyph("a", 0.125, None)))
    assert json.loads(json.dumps(reading.to_json())) == {
        "text": "7a", "confidence": 0.1235,
        "glyphs": [{"char": "7", "score": 0.9877, "box": [1.0, 2.0, 30.3, 40.0]},
                   {"char": "a", "score": 0.125, "box": None}]}


def test_symbols_outside_the_charset_are_refused(package, captcha):
    with pytest.raises(ConfigError, match="subset of the model's charset"):
        Solver(package, symbols="01$").read(captcha[1])
    assert set(Solver(package, symbols="0123456789").read(captcha[1]).text) <= set("0123456789")
