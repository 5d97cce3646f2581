"""tools/make_fonts.py: a strip made from an installed font has KCAPTCHA's layout and the real fonts' geometry."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "make_fonts.py"
FONT = Path("/usr/share/fonts/opentype/urw-base35/P052-Bold.otf")


def load_tool():
    spec = importlib.util.spec_from_file_location("make_fonts", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def strip_path(tmp_path_factory) -> Path:
    if not FONT.is_file():
        pytest.skip(f"{FONT} not installed (apt-get install fonts-urw-base35)")
    tool = load_tool()
    path = tmp_path_factory.mktemp("fonts") / f"{tool.strip_name(FONT)}.png"
    tool.save_png(tool.render_strip(FONT), path)
    return path


def test_strip_layout_and_geometry(strip_path):
    strip = Image.open(strip_path)
    assert strip.size[1] == 70 and strip.mode == "RGBA"
    runs = load_tool().validate_strip(strip)
    assert len(runs) == 36
    assert all(15 <= end - start <= 28 for start, end in runs), runs

    alpha = np.asarray(strip)[:, :, 3]
    inside = np.zeros(strip.width, dtype=bool)
    for start, end in runs:
        inside[start:end] = True
    assert (alpha[0, inside] == 255).all() and (alpha[0, ~inside] == 0).all()
    assert not alpha[1:, ~inside].any(), "ink outside the glyphs' columns"

    rows = np.flatnonzero(alpha[1:].any(axis=1))
    assert 40 <= rows[-1] - rows[0] + 1 <= 55


def test_validate_rejects_a_wrong_strip(strip_path):
    tool = load_tool()
    strip = Image.open(strip_path)
    with pytest.raises(ValueError, match="RGBA"):
        tool.validate_strip(strip.convert("LA"))
    with pytest.raises(ValueError, match="70 px tall"):
        tool.validate_strip(strip.crop((0, 0, strip.width, 60)))
    last_start = tool.validate_strip(strip)[-1][0]
    with pytest.raises(ValueError, match="35 marker runs"):
        tool.validate_strip(strip.crop((0, 0, last_start, 70)))
