"""`kdetect adapt`: config inference, font choice, pseudo-labels, bad input, and one tiny run."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdetect.data import font_match, site_config
from kdetect.data.renderer import resource_dir
from kdetect.errors import DatasetError
from kdetect.readings import Glyph, Reading
from kdetect.training.pseudo import PseudoFilter, rejection, shifted

LIBRARY = resource_dir("kcaptcha_bbox") / "library"
SITE = {"allowed_symbols": "0123456789", "length": [4, 5], "width": 150, "height": 50,
        "fluctuation_amplitude": 12, "white_noise_density": 0.0, "black_noise_density": 0.1, "no_spaces": True,
        "foreground_color": [[10, 40], [30, 70], [120, 200]], "background_color": [[230, 250], [235, 255], [235, 255]],
        "jpeg_quality": 90, "fonts": [str(LIBRARY / "roboto_bold.png")]}


def rendered_site(folder: Path, config: dict, count: int, seed: int = 5) -> Path:
    """count captchas of config with labels.tsv, rendered as a site would draw them."""
    from kdetect.data.generate import DatasetSpec, generate

    generate(DatasetSpec(config=config, seed=seed, count=count), folder, workers=1)
    return folder


@pytest.fixture(scope="module")
def site_set(tmp_path_factory):
    from kdetect.images import load_image
    from kdetect.serving.evaluate import read_labels

    folder = rendered_site(tmp_path_factory.mktemp("site"), SITE, 40)
    rows = read_labels(folder)
    return [p for p, _ in rows], [a for _, a in rows], [load_image(p) for p, _ in rows]


def test_jpeg_quality_is_read_from_the_quantisation_table(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    for quality in (30, 75, 90, 97):
        path = tmp_path / f"q{quality}.jpg"
        Image.fromarray(pixels).save(path, quality=quality)
        assert site_config.jpeg_quality(path) == quality
    Image.fromarray(pixels).save(tmp_path / "p.png")
    assert site_config.jpeg_quality(tmp_path / "p.png") is None


def test_alphabet_widens_only_where_the_labels_could_have_missed_the_rest():
    assert site_config.infer_alphabet(["123", "456"])[0] == "0123456789"  # 6 draws easily miss 4 digits
    # 150 answers of 5 never miss a digit: nine of them are the site's whole alphabet.
    nine = ["12345", "67891", "23456", "78912"] * 40
    assert site_config.infer_alphabet(nine)[0] == "123456789"
    assert site_config.infer_alphabet(["abcdefhkmnprstuvwxyz"] * 30)[0] == "abcdefhkmnprstuvwxyz"
    assert site_config.infer_alphabet(["23456789abcdegikpqsvxyz"] * 30)[0] == "23456789abcdegikpqsvxyz"


def test_direct_config_reads_canvas_colours_quality_and_lengths(site_set):
    paths, answers, images = site_set
    config, stats, _ = site_config.direct_config(images, answers, paths)
    assert (config["width"], config["height"]) == (150, 50)
    assert config["jpeg_quality"] == 90
    assert config["allowed_symbols"] == "0123456789"
    assert config["length"] == [4, 5]
    for got, truth in zip(config["foreground_color"] + config["background_color"],
                          SITE["foreground_color"] + SITE["background_color"]):
        assert abs(got[0] - truth[0]) <= 12 and abs(got[1] - truth[1]) <= 12, (got, truth)
    assert len(stats) == 40


def test_direct_config_refuses_a_folder_of_mixed_sizes(site_set):
    paths, answers, images = site_set
    with pytest.raises(DatasetError, match="sizes"):
        site_config.direct_config(images[:5] + [np.full((60, 160, 3), 255, np.uint8)], answers[:6], paths[:6])


def test_drawing_settings_are_found_by_synthesis(site_set):
    paths, answers, images = site_set
    config, stats, _ = site_config.direct_config(images, answers, paths)
    search = {"fluctuation_amplitude": (2, 12), "black_noise_density": (0.0, 0.1), "no_spaces": (False, True)}
    fitted, _ = site_config.fit_drawing({**config, "fonts": SITE["fonts"], "white_noise_density": 0.0},
                                        site_config.measured_features(stats), site_config.feature_spread(stats),
                                        count=24, rounds=1, search=search)
    assert (fitted["fluctuation_amplitude"], fitted["black_noise_density"], fitted["no_spaces"]) == (12, 0.1, True)


def test_font_choice_picks_the_sites_strip_out_of_a_handful():
    config = {k: v for k, v in SITE.items() if k != "fonts"}
    strips = [LIBRARY / f"{name}.png" for name in ("roboto_bold", "go_mono_bold", "comfortaa_bold", "dosis_bold")]
    strips.append(resource_dir("kcaptcha_bbox") / "fonts" / "vollkorn_bold.png")
    for truth in (strips[1], strips[4]):
        images, _, boxes = font_match.render_with(config, truth, 40, seed=11)
        ranked = font_match.rank_strips(config, strips, font_match.templates(images, boxes), count=24, seed=3)
        assert ranked[0][0] == truth, ranked
        assert font_match.choose_strips(ranked, most=1) == [truth]


def _reading(text, confidence=0.99, boxes=True):
    glyphs = tuple(Glyph(c, 0.99, (i * 10.0, 0.0, i * 10.0 + 8, 20.0) if boxes else None) for i, c in enumerate(text))
    return Reading(text, confidence, glyphs)


def test_pseudo_labels_are_kept_only_when_sure_and_consistent():
    rule = PseudoFilter(lengths=(4, 5), alphabet="0123456789", min_confidence=0.9)
    assert rejection(_reading("1234"), _reading("1234"), rule) is None
    assert rejection(_reading("1234"), _reading("1284"), rule) == "views disagree"
    assert rejection(_reading("123"), _reading("123"), rule) == "length"
    assert rejection(_reading("12a4"), _reading("12a4"), rule) == "alphabet"
    assert rejection(_reading("1234", boxes=False), _reading("1234"), rule) == "boxes"
    assert rejection(_reading("1234", 0.5), _reading("1234"), rule) == "confidence"
    assert rejection(_reading("1234"), _reading("1234", 0.8), rule) == "confidence"


def test_shifted_view_moves_the_ink_and_fills_with_paper():
    pixels = np.full((20, 30, 3), 240, np.uint8)
    pixels[10, 10] = 0
    moved = shifted(pixels, dx=3, dy=-2)
    assert moved[8, 13].tolist() == [0, 0, 0] and moved[10, 10].tolist() == [240, 240, 240]
    assert (moved[:, :3] == 240).all() and (moved[-2:] == 240).all()


def test_too_few_labels_and_a_pool_of_another_site_are_refused(site_set, tmp_path):
    from kdetect.training.adapt import load_site, pool_images

    small = tmp_path / "small"
    small.mkdir()
    (small / "labels.tsv").write_text("".join(f"{p.name}\t{a}\n" for p, a in zip(site_set[0][:5], site_set[1][:5])))
    for p in site_set[0][:5]:
        (small / p.name).write_bytes(p.read_bytes())
    with pytest.raises(DatasetError, match="at least"):
        load_site(small, warn=lambda m: None)
    config, _, _ = site_config.direct_config(site_set[2], site_set[1], site_set[0])
    other = tmp_path / "other"
    other.mkdir()
    for k in range(6):
        Image.fromarray(np.full((80, 160, 3), 255, np.uint8)).save(other / f"{k}.png")
    with pytest.raises(DatasetError, match="another site"):
        pool_images(other, (150, 50), config, warn=lambda m: None)
    same = site_set[0][0].parent
    assert len(pool_images(same, (150, 50), config, warn=lambda m: None)) == 40


@pytest.mark.slow
def test_adapt_end_to_end_on_a_tiny_budget_never_opens_the_test_set(tmp_path):
    from kdetect.data.renderer import load_config
    from kdetect.training.adapt import AdaptConfig, adapt

    site = tmp_path / "site"
    rendered_site(site / "train", SITE, 30, seed=1)
    rendered_site(site / "pool", SITE, 20, seed=2)
    (site / "pool" / "labels.tsv").unlink()
    test = rendered_site(site / "test", SITE, 5, seed=3)
    opened = []
    sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and args else None)
    ac = AdaptConfig(synthetic=64, detector_epochs=1, detector_steps=2, glyph_epochs=1, glyph_steps=2,
                     batch_size=8, font_images=4, config_images=4, fonts_chosen=2)
    summary = adapt(site / "train", tmp_path / "run", site / "pool", ac)
    assert not [p for p in opened if p.startswith(str(test))]
    model = tmp_path / "run" / "model"
    assert (model / "glyphs.weights.h5").is_file() and (model / "site.json").is_file()
    assert json.loads((model / "config.json").read_text())["input_width"] == 160
    recorded = json.loads((model / "config.json").read_text())
    assert recorded["alphabets"] == ["0123456789"] and recorded["answer_lengths"] == [4, 5]
    assert len(summary["fonts_chosen"]) <= 2 and summary["held_out"] == 6
    assert len(summary["rounds"]) == 2 and summary["pool_images"] == 20
    # site.json is a render config `kdetect generate --config` reads.
    config = load_config(tmp_path / "run" / "site.json")
    rendered_site(tmp_path / "again", config, 2)
    assert Image.open(tmp_path / "run" / "site.png").size[0] > 2 * 150


def test_a_sites_length_range_round_trips_and_is_checked():
    from kdetect.detector.config import ModelConfig
    from kdetect.errors import ConfigError

    cfg = ModelConfig.from_dict({"answer_lengths": [4, 8]})
    assert cfg.answer_lengths == (4, 8) and ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg
    for bad in ([5, 3], [0, 4], [4, 99]):
        with pytest.raises(ConfigError, match="answer_lengths"):
            ModelConfig.from_dict({"answer_lengths": bad})


def test_adapt_refuses_a_run_folder_holding_the_users_files(site_set, tmp_path):
    from kdetect.errors import OutputError
    from kdetect.training.adapt import adapt

    out = tmp_path / "mine"
    (out / "fonts").mkdir(parents=True)
    (out / "fonts" / "my-strip.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match="no `kdetect adapt` wrote"):
        adapt(site_set[0][0].parent, out)
    assert (out / "fonts" / "my-strip.png").read_bytes() == b"mine"
