"""Our presets look like real KCAPTCHA: ink fraction and text extent within 15% of ../shared/realval."""

import pytest

from kdetect.data import renderer
from kdetect.data.fidelity import compare, folder_stats, image_stats
from kdetect.data.generate import DatasetSpec, generate
from kdetect.presets import ENGINE_PRESETS

from conftest import REALVAL


def test_stats_of_a_drawn_bar():
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (100, 50), (250, 250, 250))
    ImageDraw.Draw(image).rectangle([20, 10, 59, 19], fill=(10, 10, 10))
    ink, extent = image_stats(image)
    assert ink == pytest.approx(400 / 5000)
    assert extent == 40


@pytest.mark.slow  # draws captchas with the PHP renderer
@pytest.mark.skipif(not REALVAL.is_dir(), reason="../shared/realval is absent")
@pytest.mark.parametrize("preset", ENGINE_PRESETS)
def test_preset_matches_real_captchas(preset, tmp_path):
    spec = DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=77, count=150)
    generate(spec, tmp_path)
    ours = folder_stats(sorted(tmp_path.glob("*.jpg")))
    real = folder_stats(sorted((REALVAL / preset).glob("*.jpg")))
    for stat, diff in compare(ours, real).items():
        assert diff <= 0.15, f"{preset} {stat}: ours {ours[stat]:.4f}, real {real[stat]:.4f}"
