"""Dataset generation: determinism, resume after a kill, the TFRecord reader, and clear errors."""

import collections
import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.errors import ConfigError, DatasetError, RendererError


def spec(preset="varlen", count=40, **kw) -> DatasetSpec:
    return DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=3, count=count,
                       preset=preset, **kw)


def same_tree(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir() if p.is_file())
    assert names == sorted(p.name for p in b.iterdir() if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_same_seed_and_config_give_identical_bytes(tmp_path):
    generate(spec(shard_size=15), tmp_path / "a", workers=2)
    generate(spec(shard_size=15), tmp_path / "b", workers=1)
    same_tree(tmp_path / "a", tmp_path / "b")
    other = generate(DatasetSpec(**{**spec().__dict__, "seed": 4}), tmp_path / "c")
    assert (tmp_path / "c" / "annotations.jsonl").read_text() != (tmp_path / "a" / "annotations.jsonl").read_text()
    assert other["images"] == 40


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_tfrecord_round_trip(tmp_path):
    from kdetect.charset import CHARSET
    from kdetect.data.tfrecord import read_dataset

    generate(spec(count=30, tfrecord=True, shard_size=8), tmp_path)
    anns = [__import__("json").loads(line) for line in (tmp_path / "annotations.jsonl").open()]
    examples = list(read_dataset(tmp_path).as_numpy_iterator())
    assert len(examples) == 30
    for ex, ann in zip(examples, anns):
        assert ex["text"].decode() == ann["text"]
        assert ex["image"].shape == (ann["height"], ann["width"], 3)
        assert ex["boxes"].tolist() == [b[:4] for b in ann["boxes"] if b]
        assert "".join(CHARSET[i] for i in ex["labels"]) == ann["text"]


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_augmented_pipeline_is_deterministic(tmp_path):
    from kdetect.data.augment import augment_dataset
    from kdetect.data.tfrecord import read_dataset

    generate(spec(count=12, tfrecord=True), tmp_path)
    runs = [list(augment_dataset(read_dataset(tmp_path), seed=5).as_numpy_iterator()) for _ in range(2)]
    assert len(runs[0]) == 12
    for a, b in zip(*runs):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["boxes"], b["boxes"])


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_dataset(tmp_path):
    args = ["generate", "--preset", "gnuboard5", "--count", "3000", "--seed", "9", "--tfrecord",
            "--shard-size", "100", "--workers", "1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "kdetect.cli", *args]
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "killed").glob("shard-00002-*")) and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "manifest.json").exists(), "the run finished before it could be killed"
    with pytest.raises(DatasetError, match="run the same"):
        from kdetect.data.tfrecord import load_manifest
        load_manifest(tmp_path / "killed")
    subprocess.run([*cmd, "--out", str(tmp_path / "killed")], env=env, check=True, capture_output=True)
    subprocess.run([*cmd, "--out", str(tmp_path / "whole")], env=env, check=True, capture_output=True)
    same_tree(tmp_path / "killed", tmp_path / "whole")
    assert not list((tmp_path / "killed").rglob("*.tmp"))


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_truncated_shard_is_reported(tmp_path):
    from kdetect.data.tfrecord import read_dataset

    generate(spec(count=20, tfrecord=True, shard_size=10), tmp_path)
    shard = next(tmp_path.glob("shard-00001-*"))
    shard.write_bytes(shard.read_bytes()[:500])
    with pytest.raises(DatasetError, match="delete .*shard-00001.* run the same"):
        read_dataset(tmp_path)


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_resume_with_other_settings_is_refused(tmp_path):
    generate(spec(count=10), tmp_path)
    with pytest.raises(DatasetError, match="other settings"):
        generate(spec(count=11), tmp_path)


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_a_length_range_mostly_too_long_still_renders(tmp_path):
    # At 100 px only 2-5 Gnuboard glyphs fit, so of lengths 2-30 most draws never fit: the
    # renderer falls back to the shortest length instead of giving up on the image.
    config = renderer.load_config(renderer.preset_path("gnuboard5"))
    config.update(length=[2, 30], width=100, fit=True)
    generate(DatasetSpec(config=config, seed=5, count=8, preset="gnuboard5"), tmp_path)
    texts = [json.loads(line)["text"] for line in (tmp_path / "annotations.jsonl").open()]
    assert len(texts) == 8 and all(2 <= len(t) <= 6 for t in texts) and any(len(t) == 2 for t in texts)


def test_unknown_config_key_names_the_fix(make_config, tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'lenght' \\(did you mean 'length'\\?\\)"):
        renderer.check_config(make_config(lenght=4))


@pytest.mark.parametrize("overrides, message", [
    ({"length": 40, "fit": True, "width": 100}, "never fits"),
    ({"allowed_symbols": "01X"}, "'X' is not in the font alphabet"),
    ({"width": "wide"}, "'width' must be an integer"),
    ({"foreground_color": [0, 0, 300]}, "'foreground_color' must be"),
    ({"no_spaces": {"choice": []}}, "non-empty list"),
])
def test_impossible_or_malformed_configs_are_refused(make_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        renderer.check_config(make_config(**overrides))


def test_invalid_font_strip_is_refused(make_config, tmp_path):
    from PIL import Image

    fonts = tmp_path / "fonts"
    fonts.mkdir()
    Image.new("RGBA", (200, 70)).save(fonts / "blank.png")
    with pytest.raises(ConfigError, match="blank.png' is not a KCAPTCHA font strip: row 0 has 0 marker runs"):
        renderer.check_config(make_config(fonts=str(fonts)))


def test_missing_php_names_the_install_command(monkeypatch, make_config):
    renderer.php_binary.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with pytest.raises(RendererError, match="apt-get install php-cli php-gd"):
            renderer.check_config(make_config())
    finally:
        renderer.php_binary.cache_clear()


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_resume_with_changed_font_strips_is_refused(make_config, tmp_path):
    import shutil

    fonts = tmp_path / "fonts"
    fonts.mkdir()
    strips = sorted(renderer.resource_dir("kcaptcha_bbox").glob("fonts/*.png"))[:2]
    for strip in strips:
        shutil.copy(strip, fonts / strip.name)
    config = renderer.load_config(make_config(fonts=str(fonts)))
    generate(DatasetSpec(config=config, seed=1, count=4, shard_size=2), tmp_path / "data")
    assert set(renderer.check_config(tmp_path / "data" / "config.json")) == {s.stem for s in strips}
    shutil.copy(strips[1], fonts / strips[0].name)  # same name, other glyphs
    with pytest.raises(DatasetError, match="font strips changed"):
        generate(DatasetSpec(config=config, seed=1, count=4, shard_size=2), tmp_path / "data")


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_generate_cli_draws_with_another_font_folder(tmp_path, capsys):
    import shutil

    from kdetect.cli import main

    fonts = tmp_path / "fonts"
    fonts.mkdir()
    strip = sorted(renderer.resource_dir("kcaptcha_bbox").glob("fonts/*.png"))[0]
    shutil.copy(strip, fonts / strip.name)
    assert main(["generate", "--preset", "gnuboard5", "--fonts", str(fonts), "--count", "3", "--seed", "1",
                 "--out", str(tmp_path / "data")]) == 0
    recorded = json.loads((tmp_path / "data" / "dataset.json").read_text())["config"]["fonts"]
    assert recorded == str(fonts.resolve())
    assert set(renderer.check_config(tmp_path / "data" / "config.json")) == {strip.stem}
    assert main(["generate", "--preset", "gnuboard5", "--fonts", str(tmp_path / "none"), "--count", "3",
                 "--out", str(tmp_path / "other")]) == 2
    assert "make_fonts.py" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def font_folder(path: Path, count: int) -> Path:
    """A folder holding the first `count` of the shipped look-alike strips."""
    import shutil

    path.mkdir()
    for strip in sorted(renderer.resource_dir("kcaptcha_bbox").glob("fonts/*.png"))[:count]:
        shutil.copy(strip, path / strip.name)
    return path


@pytest.mark.slow
def test_several_font_folders_are_drawn_folder_first(tmp_path):
    """Each image draws a folder, then a strip in it: one strip in a folder of its own is drawn
    about half the time, however many the other folder holds."""

    lone, many = font_folder(tmp_path / "lone", 1), font_folder(tmp_path / "many", 9)
    (many / sorted(p.name for p in lone.iterdir())[0]).unlink()  # no strip in both
    config = {**renderer.load_config(renderer.preset_path("l2")), "fonts": [str(lone), str(many)]}
    generate(DatasetSpec(config=config, seed=5, count=400), tmp_path / "data")
    fonts = collections.Counter(json.loads(line)["font"] for line in (tmp_path / "data" / "annotations.jsonl").open())
    alone = next(iter(p.stem for p in lone.iterdir()))
    assert 160 <= fonts[alone] <= 240 and len(fonts) == 9
    assert len(json.loads((tmp_path / "data" / "fonts.json").read_text())) == 9


REAL_FONTS = Path(__file__).resolve().parents[2] / "shared" / "kcaptcha-fonts"


@pytest.mark.slow  # draws captchas with the PHP renderer
@pytest.mark.skipif(not REAL_FONTS.is_dir(), reason="KCAPTCHA's font strips are not at ../shared/kcaptcha-fonts")
def test_kcaptcha_fonts_draw_beside_the_look_alikes(tmp_path):
    """The default model's training mixture: KCAPTCHA's three strips and the shipped look-alikes."""

    from kdetect.cli import main

    assert main(["generate", "--preset", "gnuboard5", "--fonts", str(REAL_FONTS), str(renderer.resource_dir("kcaptcha_bbox") / "fonts"),
                 "--count", "60", "--seed", "1", "--out", str(tmp_path / "data")]) == 0
    fonts = json.loads((tmp_path / "data" / "fonts.json").read_text())
    assert {"times_bold", "palatino_linotype_bold", "perpetua_bold"} <= set(fonts) and len(fonts) == 31
    drawn = [json.loads(line)["font"] for line in (tmp_path / "data" / "annotations.jsonl").open()]
    real = sum(f in {"times_bold", "palatino_linotype_bold", "perpetua_bold"} for f in drawn)
    assert 15 <= real <= 45


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_an_answer_that_does_not_fit_is_redrawn_at_its_length(tmp_path):
    # KCAPTCHA 2.1 redraws answer and font until the text fits, not the length (its real captchas
    # hold as many 7s as 5s). On a canvas where most 7-glyph texts overflow, redrawing the length
    # too would leave few 7s.
    config = {**renderer.load_config(renderer.preset_path("kcaptcha21")), "width": 136}
    out = tmp_path / "narrow"
    generate(DatasetSpec(config=config, seed=5, count=300), out)
    lengths = collections.Counter(len(json.loads(line)["text"]) for line in (out / "annotations.jsonl").open())
    assert set(lengths) == {5, 6, 7}
    assert min(lengths.values()) >= 0.7 * max(lengths.values()), lengths
