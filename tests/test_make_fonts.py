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


def make_strip(folder: Path, variant: str | None) -> Path:
    if not FONT.is_file():
        pytest.skip(f"{FONT} not installed (apt-get install fonts-urw-base35)")
    tool = load_tool()
    path = folder / f"{tool.strip_name(FONT, variant)}.png"
    tool.save_png(tool.render_strip(FONT, variant), path)
    return path


@pytest.fixture(scope="module")
def strip_path(tmp_path_factory) -> Path:
    return make_strip(tmp_path_factory.mktemp("fonts"), None)


@pytest.fixture(scope="module")
def variant_paths(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("variants")
    return {v: make_strip(folder, v) for v in ("thin-narrow", "thick-wide")}


def test_variant_names():
    tool = load_tool()
    assert tool.strip_name(FONT) == "p052_bold"
    assert tool.strip_name(FONT, "thin-narrow") == "p052_bold-thin-narrow"
    assert tool.strip_name("/x/Cardob101.ttf") == "cardo_bold"
    assert tool.font_variants(0, 1) == ["thin-narrow"] and tool.font_variants(1, 2) == ["thick-wide", "thin-wide"]
    assert set(tool.font_variants(3, 4)) == set(tool.VARIANTS)


def test_variants_are_valid_strips_that_bracket_the_calibrated_one(strip_path, variant_paths):
    for path in variant_paths.values():
        check_layout_and_geometry(path)

    def measure(path: Path) -> tuple[float, float]:
        """(mean glyph span in columns, ink in alpha units)."""
        strip = Image.open(path)
        runs = load_tool().validate_strip(strip)
        return np.mean([e - s for s, e in runs]), float(np.asarray(strip)[1:, :, 3].sum())

    (span, ink) = measure(strip_path)
    (thin_span, thin_ink), (thick_span, thick_ink) = (measure(variant_paths[v]) for v in ("thin-narrow", "thick-wide"))
    assert thin_span < span < thick_span
    assert thin_ink < ink < thick_ink


def test_strip_layout_and_geometry(strip_path):
    check_layout_and_geometry(strip_path)


def check_layout_and_geometry(path: Path) -> None:
    strip = Image.open(path)
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


def test_shipped_strips_are_valid():
    strips = sorted((SCRIPT.parents[1] / "kcaptcha_bbox" / "fonts").glob("*.png"))
    assert strips
    for path in strips:
        check_layout_and_geometry(path)


def test_warped_strips_are_valid_repeatable_and_reshape_each_glyph(tmp_path, strip_path):
    tool = load_tool()
    warped = make_strip(tmp_path, "warp1")
    check_layout_and_geometry(warped)
    assert tool.strip_name(FONT, "warp1") == "p052_bold-warp1" and tool.warp_seed("warp12") == 12
    again = np.asarray(tool.render_strip(FONT, "warp1"))
    assert np.array_equal(again, np.asarray(Image.open(warped))), "a warped strip must not change between runs"
    assert not np.array_equal(again, np.asarray(tool.render_strip(FONT, "warp2")))

    def glyphs(path: Path) -> list[np.ndarray]:
        strip = Image.open(path)
        alpha = np.asarray(strip)[1:, :, 3]
        return [alpha[:, s:e] for s, e in tool.validate_strip(strip)]

    # Every glyph keeps its height band but changes its shape: the rows where its ink is widest move.
    moved = 0
    for plain, bent in zip(glyphs(strip_path), glyphs(warped)):
        plain_rows, bent_rows = (np.flatnonzero(g.any(axis=1)) for g in (plain, bent))
        assert abs(len(plain_rows) - len(bent_rows)) <= 2
        moved += not np.array_equal((plain > 0).sum(axis=1), (bent > 0).sum(axis=1))
    assert moved >= 30
    with pytest.raises(ValueError, match="unknown variant"):
        tool.render_strip(FONT, "wobbly")


def test_warp_mask_moves_the_waist():
    tool = load_tool()
    # A filled 8-like mask: two discs, the upper one smaller; the waist between them.
    yy, xx = np.mgrid[0:200, 0:80]
    mask = ((yy - 60) ** 2 + (xx - 40) ** 2 < 30 ** 2) | ((yy - 130) ** 2 + (xx - 40) ** 2 < 38 ** 2)
    widths = lambda m: m.sum(axis=1)  # noqa: E731
    waist = lambda m: 60 + int(np.argmin(widths(m)[60:130]))  # noqa: E731
    ups = downs = 0
    for seed in range(20):
        bent = tool.warp_mask(mask, np.random.default_rng(seed))
        assert bent.shape[0] == mask.shape[0] and tool._ink_rows(bent) == tool._ink_rows(mask)
        ups += waist(bent) < waist(mask) - 2
        downs += waist(bent) > waist(mask) + 2
    assert ups and downs, (ups, downs)


def test_stress_mask_makes_rising_strokes_heavy_and_falling_ones_light():
    tool = load_tool()
    yy, xx = np.mgrid[0:240, 0:240]
    rising = np.abs((239 - yy) - xx) < 14  # "/" on the page: y grows downwards
    falling = np.abs(yy - xx) < 14  # its mirror
    for seed in range(10):
        a = tool.stress_mask(rising, np.random.default_rng(seed)).sum() / rising.sum()
        b = tool.stress_mask(falling, np.random.default_rng(seed)).sum() / falling.sum()
        assert a > 1.05 and b < 0.9, (seed, a, b)


def test_stress_mask_keeps_a_hairline_whole():
    tool = load_tool()
    yy, xx = np.mgrid[0:240, 0:120]
    # A 7 whose falling diagonal is two px wide, thinner than any stress line.
    seven = ((yy < 20) & (xx > 10)) | (np.abs(yy - 2 * (xx - 10)) < 3)
    for seed in range(5):
        out = tool.stress_mask(seven, np.random.default_rng(seed))
        top, bottom = tool._ink_rows(out)
        assert top <= 2 and bottom >= 200, "the diagonal must not vanish"


def test_stressed_strips_are_valid_and_repeatable(tmp_path):
    tool = load_tool()
    stressed = make_strip(tmp_path, "stress1")
    check_layout_and_geometry(stressed)
    assert tool.strip_name(FONT, "stress1") == "p052_bold-stress1" and tool.stress_seed("stress3") == 3
    assert tool.stress_seed("warp3") is None and tool.warp_seed("stress3") is None
    again = np.asarray(tool.render_strip(FONT, "stress1"))
    assert np.array_equal(again, np.asarray(Image.open(stressed)))
    assert not np.array_equal(again, np.asarray(tool.render_strip(FONT, "stress2")))


def test_training_fonts_hold_no_held_out_family_and_the_unseen_ones_are_held_out():
    heldout = Path(__file__).resolve().parents[2] / "shared" / "heldout-fonts.txt"
    if not heldout.is_file():
        pytest.skip(f"{heldout} absent")
    from PIL import ImageFont

    held = {line.strip().lower() for line in heldout.read_text().splitlines() if line.strip() and not line.startswith("#")}
    tool = load_tool()

    def family(path: str) -> str:
        return ImageFont.truetype(path, 20).getname()[0].lower()

    trained = [p for p in {**tool.DEFAULT_FONTS, **tool.LIBRARY_FONTS} if Path(p).is_file()]
    unseen = [p for p in tool.UNSEEN_FONTS if Path(p).is_file()]
    if not trained or not unseen:
        pytest.skip("the fonts are not installed (bash tools/setup.sh)")
    # The check must see a held-out family where there is one: DejaVu is on the shared list.
    assert any(family(p) in held for p in unseen)
    # Our own unseen families and their twins are out of training too.
    held |= {family(p) for p in unseen} | {name.lower() for name in tool.UNSEEN_TWINS}
    assert not [p for p in trained if family(p) in held]
    # Every strip of the adaptation library comes from a listed font, so none slipped in by hand.
    names = {tool.strip_name(p) for p in tool.LIBRARY_FONTS}
    strips = (SCRIPT.parents[1] / "kcaptcha_bbox" / "library").glob("*.png")
    assert {s.stem.split("-")[0] for s in strips} <= names
