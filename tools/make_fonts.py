#!/usr/bin/env python3
"""Make KCAPTCHA font strips from installed bold serif fonts.

A strip is one RGBA PNG, 70 px tall. Row 0 marks each glyph with an opaque run above its
columns, in alphabet order; rows 1..69 hold the glyphs in black with anti-aliased alpha.
The real KCAPTCHA fonts draw each bold letter as its outline only, so we do the same:
render the filled letter at SS x resolution, keep a band around its contour, and box-filter
down to get the alpha.

Each font gives its calibrated strip (<name>.png: the sizes below) and, for domain
randomisation, variants with a thinner or thicker outline and narrower or wider glyphs
(<name>-thin-narrow.png and so on; see VARIANTS): the real faces differ from each other and
from any look-alike, so the training strips bracket the calibrated means rather than sit on them.
Warped strips (<name>-warp1.png ...; see warp_mask) go further: every glyph gets its own random
proportions, because the real faces differ glyph by glyph, not only as a whole (Perpetua's 8 has
a small upper bowl, its 4 is narrow and steep, and a model that never saw such shapes reads them
as 5 and 1). Stressed strips (<name>-stress1.png ...; see stress_mask) change the stroke contrast
glyph by glyph: Perpetua's 4 has a heavy diagonal and a light stem where the look-alikes have a
hairline diagonal and a heavy stem, and a model that saw only theirs reads that 4 as 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
HEIGHT = 70  # marker row + 69 glyph rows
SS = 4  # supersampling factor
# The five sizes below were tuned so that captchas rendered from these strips match real
# KCAPTCHA ones (shared/realval) in text width per glyph, text height and ink darkness.
OUTLINE_PX = 2.0  # width of the contour line in output pixels
FIGURE_HEIGHT = 33.5  # mean height of the figures in rows, outline included
LETTER_SPAN = 48  # rows from the highest ascender to the deepest descender of the letters
# Mean filled widths (px) of figures and of letters: the real faces are narrower than their
# free look-alikes, most of all in the figures.
FIGURE_WIDTH, LETTER_WIDTH = 17.8, 20.8
MIN_SPAN, MAX_SPAN = 15, 28  # glyph column span, margins included
MARGIN = 1  # transparent columns kept inside each span, left and right
GAP = 2  # transparent columns between spans
CANVAS_ROWS = 2 * (HEIGHT - 1) * SS  # glyphs are drawn on a tall canvas, then cropped to rows 1..69

# Variants: name suffix -> (outline width in px, factor on the calibrated glyph widths). The
# band spans both sides of 2.0 px and of the calibrated widths, so the mean ink and text extent
# of all strips stay near the calibrated ones.
VARIANTS = {
    "thin-narrow": (1.5, 0.9),
    "thick-wide": (2.5, 1.1),
    "thin-wide": (1.5, 1.1),
    "thick-narrow": (2.5, 0.9),
}

# Warped glyphs: the ranges of the random per-glyph changes (see warp_mask). Waist: where the
# glyph's middle row moves, as a fraction of its height (moves the bar of 4, 8's waist, 3's
# join). Taper: how much wider the top is than the middle (negative: narrower), with the bottom
# the mirror. Width: a factor on the glyph's width alone.
WARP_WAIST, WARP_TAPER, WARP_WIDTH = 0.15, 0.2, (0.85, 1.15)
# Stressed glyphs: strokes along a random axis within STRESS_SPREAD degrees of the falling
# diagonal (top left to bottom right) get thinner by a random share of STRESS_MAX output px,
# strokes across it, the rising ones, as much thicker (see stress_mask), so verticals and
# horizontals keep about their weight. Only this sense: the look-alikes already draw rising
# strokes light and falling ones heavy, as most romans do; Perpetua Bold's 4 does the opposite.
STRESS_SPREAD, STRESS_MAX = 20.0, 4.0

# Fonts and the Debian packages that ship them. Times-, Palatino- and Century-like bold serifs
# for two of the real faces; for the third, Perpetua Bold (Gill's chiselled roman: small sharp
# serifs, lighter contrast, short x-height, old-style figures) humanist and old-style faces:
# Linux Libertine, Cardo (Bembo-like), EB Garamond and Vollkorn (old-style figures), Accanthis
# (semi-old-style figures) and Baskervald (transitional, as Perpetua is usually classed).
_URW = "/usr/share/fonts/opentype/urw-base35"
_GYRE = "/usr/share/texmf/fonts/opentype/public/tex-gyre"
_ADF = "/usr/share/fonts/truetype/adf"
DEFAULT_FONTS = {
    f"{_URW}/NimbusRoman-Bold.otf": "fonts-urw-base35",
    f"{_URW}/P052-Bold.otf": "fonts-urw-base35",
    f"{_URW}/C059-Bold.otf": "fonts-urw-base35",
    f"{_GYRE}/texgyretermes-bold.otf": "fonts-texgyre",
    f"{_GYRE}/texgyrepagella-bold.otf": "fonts-texgyre",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Bold.ttf": "fonts-liberation",
    "/usr/share/fonts/truetype/freefont/FreeSerifBold.ttf": "fonts-freefont-ttf",
    "/usr/share/fonts/truetype/crosextra/Caladea-Bold.ttf": "fonts-crosextra-caladea",
    "/usr/share/fonts/opentype/linux-libertine/LinLibertine_RB.otf": "fonts-linuxlibertine",
    "/usr/share/fonts/truetype/cardo/Cardob101.ttf": "fonts-cardo",
    "/usr/share/fonts/opentype/ebgaramond/EBGaramond12-Bold.otf": "fonts-ebgaramond",
    "/usr/share/fonts/truetype/vollkorn/Vollkorn-Bold.ttf": "fonts-vollkorn",
    f"{_ADF}/AccanthisADFStd-Bold.otf": "fonts-adf-accanthis",
    f"{_ADF}/BaskervaldADFStd-Bold.otf": "fonts-adf-baskervald",
}
# Families no shipped model has trained on, held out to measure how a model reads a font a site
# swaps in (--unseen): a Bookman, a humanist slab-ish serif, a grotesque sans and a geometric
# sans. None has a twin (the same outlines under another name) among the fonts we train on:
# TeX Gyre Schola, once here, is C059's twin and C059 trains, so it left; URW Bookman (Bonum's
# twin) and TeX Gyre Adventor (URW Gothic's) are in no list of ours.
UNSEEN_FONTS = {
    f"{_GYRE}/texgyrebonum-bold.otf": "fonts-texgyre",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf": "fonts-dejavu-core",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf": "fonts-dejavu-core",
    f"{_URW}/URWGothic-Demi.otf": "fonts-urw-base35",
}
# Families with an unseen font's outlines under another name that ../shared/heldout-fonts.txt
# does not list (URW Gothic's twin, TeX Gyre Adventor, it does): out of every training list too.
UNSEEN_TWINS = ("URW Bookman",)
# The adaptation library (--library; `kdetect adapt` searches it for a site's fonts): designs
# beyond the bold serifs, so a site that swaps KCAPTCHA's faces for a sans, a rounded, a
# monospace or an oblique one finds a near neighbour. No family of ../shared/heldout-fonts.txt
# or a twin of one (same outlines, other name: Arimo, Cousine's Liberation Mono is its own
# design and stays; Hack is DejaVu Sans Mono and is left out) is here: they measure unseen fonts.
_TT, _OT = "/usr/share/fonts/truetype", "/usr/share/fonts/opentype"
LIBRARY_FONTS = {
    # grotesque and neo-grotesque sans
    f"{_TT}/roboto/unhinted/RobotoTTF/Roboto-Bold.ttf": "fonts-roboto-unhinted",
    f"{_TT}/roboto/unhinted/RobotoCondensed-Bold.ttf": "fonts-roboto-unhinted",
    f"{_OT}/inter/Inter-Bold.otf": "fonts-inter",
    f"{_TT}/karla/Karla-Bold.otf": "fonts-karla",
    f"{_TT}/clear-sans/ClearSans-Bold.ttf": "fonts-clear-sans",
    "/usr/share/fonts/fonts-go/Go-Bold.ttf": "fonts-go",
    f"{_OT}/b612/B612-Bold.otf": "fonts-b612",
    f"{_OT}/cantarell/Cantarell-Bold.otf": "fonts-cantarell",
    # humanist sans
    f"{_OT}/cabin/Cabin-Bold.otf": "fonts-cabin",
    f"{_OT}/linux-libertine/LinBiolinum_RB.otf": "fonts-linuxlibertine",
    f"{_TT}/andika/Andika-Bold.ttf": "fonts-sil-andika",
    # geometric and rounded sans
    f"{_OT}/league-spartan/LeagueSpartan-Bold.otf": "fonts-league-spartan",
    f"{_TT}/quicksand/Quicksand-Bold.ttf": "fonts-quicksand",
    f"{_TT}/comfortaa/Comfortaa-Bold.ttf": "fonts-comfortaa",
    f"{_OT}/dosis/Dosis-Bold.otf": "fonts-dosis",
    # monospace, slab-serifed and plain
    f"{_TT}/liberation/LiberationMono-Bold.ttf": "fonts-liberation",
    "/usr/share/fonts/fonts-go/Go-Mono-Bold.ttf": "fonts-go",
    f"{_TT}/jetbrains-mono/JetBrainsMono-Bold.ttf": "fonts-jetbrains-mono",
    f"{_TT}/firacode/FiraCode-Bold.ttf": "fonts-firacode",
    f"{_TT}/anonymous-pro/Anonymous Pro B.ttf": "fonts-anonymous-pro",
    f"{_TT}/hermit/Hermit-bold.otf": "fonts-hermit",
    f"{_TT}/mononoki/mononoki-Bold.ttf": "fonts-mononoki",
    f"{_OT}/league-mono/LeagueMono-Bold.otf": "fonts-league-mono",
    f"{_OT}/b612/B612Mono-Bold.otf": "fonts-b612",
    f"{_TT}/inconsolata/Inconsolata.otf": "fonts-inconsolata",
    f"{_OT}/linux-libertine/LinLibertine_M.otf": "fonts-linuxlibertine",
    # oblique
    f"{_TT}/roboto/unhinted/RobotoTTF/Roboto-BoldItalic.ttf": "fonts-roboto-unhinted",
    "/usr/share/fonts/fonts-go/Go-Bold-Italic.ttf": "fonts-go",
    f"{_TT}/liberation/LiberationMono-BoldItalic.ttf": "fonts-liberation",
    # italic serifs and a condensed face, so the default model's training spans those classes too
    f"{_TT}/crosextra/Caladea-BoldItalic.ttf": "fonts-crosextra-caladea",
    f"{_OT}/linux-libertine/LinLibertine_RBI.otf": "fonts-linuxlibertine",
    f"{_URW}/P052-BoldItalic.otf": "fonts-urw-base35",
    f"{_TT}/freefont/FreeSerifBoldItalic.ttf": "fonts-freefont-ttf",
    f"{_TT}/vollkorn/Vollkorn-BoldItalic.ttf": "fonts-vollkorn",
    f"{_OT}/league-mono/LeagueMono-CondensedBold.otf": "fonts-league-mono",
    # A second round of designs for issue 26's default model: a geometric sans of Futura's kind
    # (single-storey a and g) and its condensed cut, more geometric and squared sans, a DIN,
    # a rounded face, a constructed one, and serifs of kinds the first list lacks (Charter,
    # Gentium, a Modern, Computer Modern, a Goudy).
    f"{_TT}/beteckna/BetecknaGS-Bold.ttf": "fonts-beteckna",
    f"{_TT}/beteckna/BetecknaGSCondensed-Bold.ttf": "fonts-beteckna",
    f"{_TT}/manrope/Manrope-Bold.ttf": "fonts-manrope",
    f"{_OT}/mplus/Mplus1-Bold.otf": "fonts-mplus",
    f"{_OT}/mplus/Mplus1Code-Bold.otf": "fonts-mplus",
    f"{_OT}/jura/Jura-Bold.otf": "fonts-jura",
    f"{_OT}/play/Play-Bold.otf": "fonts-play",
    f"{_TT}/oxygen/Oxygen-Sans-Bold.ttf": "fonts-oxygen",
    f"{_TT}/opendin/OSP-DIN.ttf": "fonts-opendin",
    f"{_OT}/junction/Junction.otf": "fonts-junction",
    f"{_TT}/eurofurence/eurof75.ttf": "fonts-eurofurence",
    f"{_OT}/millimetre/millimetreA Bold 01.otf": "fonts-millimetre",
    f"{_TT}/charis/CharisSIL-Bold.ttf": "fonts-sil-charis",
    f"{_TT}/charis/CharisSIL-BoldItalic.ttf": "fonts-sil-charis",
    f"{_TT}/gentiumplus/GentiumBookPlus-Bold.ttf": "fonts-sil-gentiumplus",
    f"{_TT}/gentiumplus/GentiumPlus-BoldItalic.ttf": "fonts-sil-gentiumplus",
    f"{_TT}/fonts-oldstandard/OldStandard-Bold.ttf": "fonts-oldstandard",
    "/usr/share/texmf/fonts/opentype/public/lm/lmroman10-bold.otf": "fonts-lmodern",
    f"{_OT}/sortsmill/GoudyBookletter1911.otf": "fonts-goudybookletter",
    # A third round (issue 26): the unseen-font errors left are a geometric or Bookman-like
    # glyph read as its neighbour (single-storey a as d, a round 3 as 8), so more designs of
    # those classes and of their neighbours: the Averia faces (each the average of many
    # fonts), humanist and grotesque sans (PT Sans, Tuffy, Gillius, Universalis, Allerta, CMU
    # Sans), signage and geometric faces (Routed Gothic, National Park, Highway Gothic, Sora),
    # a casual one (Comic Neue), and soft or wide serifs (Century Catalogue, Romande, Oldania,
    # Irianis, PT Serif, Noto Serif, CMU Concrete, Fanwood, Prociono, Junicode).
    f"{_TT}/averia-gwf/AveriaSansGWF-Bold.ttf": "fonts-averia-sans-gwf",
    f"{_TT}/averia-gwf/AveriaSerifGWF-Bold.ttf": "fonts-averia-serif-gwf",
    f"{_TT}/averia-gwf/AveriaGWF-Bold.ttf": "fonts-averia-gwf",
    f"{_TT}/paratype/PTS75F.ttf": "fonts-paratype",
    f"{_TT}/paratype/PTF75F.ttf": "fonts-paratype",
    f"{_TT}/paratype/PTM75F.ttf": "fonts-paratype",
    f"{_TT}/tuffy/Tuffy_Bold.ttf": "fonts-tuffy",
    f"{_ADF}/GilliusADF-Bold.otf": "fonts-adf-gillius",
    f"{_ADF}/UniversalisADFStd-Bold.otf": "fonts-adf-universalis",
    f"{_OT}/allerta/allerta_medium.otf": "fonts-allerta",
    f"{_TT}/cmu/cmunsx.ttf": "fonts-cmu",
    f"{_TT}/routed-gothic/routed-gothic-wide.ttf": "fonts-routed-gothic",
    f"{_OT}/national-park/NationalPark-Heavy.otf": "fonts-national-park",
    f"{_TT}/roadgeek/RG2014D.ttf": "fonts-roadgeek",
    f"{_OT}/sora/Sora-Bold.otf": "fonts-sora",
    f"{_OT}/comic-neue/ComicNeue-Bold.otf": "fonts-comic-neue",
    f"{_TT}/fonts-century-catalogue/Century-Catalogue.ttf": "fonts-century-catalogue",
    f"{_ADF}/RomandeADFStd-DemiBold.otf": "fonts-adf-romande",
    f"{_ADF}/OldaniaADFStd-Bold.otf": "fonts-adf-oldania",
    f"{_ADF}/IrianisADFStd-Bold.otf": "fonts-adf-irianis",
    f"{_TT}/noto/NotoSerif-Bold.ttf": "fonts-noto-core",
    f"{_TT}/cmu/cmunobx.ttf": "fonts-cmu",
    f"{_TT}/fanwood/FanwoodText.otf": "fonts-fanwood",
    f"{_OT}/fonts-prociono/Prociono.otf": "fonts-prociono",
    f"{_OT}/junicode/JunicodeTwoBeta-Bold.otf": "fonts-junicode",
}
KNOWN_FONTS = {**DEFAULT_FONTS, **UNSEEN_FONTS, **LIBRARY_FONTS}
# Strip names for files whose stem says little.
STRIP_NAMES = {
    "PTS75F": "pt_sans_bold",
    "PTF75F": "pt_serif_bold",
    "PTM75F": "pt_mono_bold",
    "cmunsx": "cmu_sans_bold",
    "cmunobx": "cmu_concrete_bold",
    "RG2014D": "highway_gothic_d",
    "LinLibertine_RB": "linux_libertine_bold",
    "Cardob101": "cardo_bold",
    "EBGaramond12-Bold": "eb_garamond_bold",
    "AccanthisADFStd-Bold": "accanthis_bold",
    "BaskervaldADFStd-Bold": "baskervald_bold",
    "LinBiolinum_RB": "linux_biolinum_bold",
    "LinLibertine_M": "linux_libertine_mono",
    "LinLibertine_RBI": "linux_libertine_bold_italic",
    "Anonymous Pro B": "anonymous_pro_bold",
    "Inconsolata": "inconsolata",
    "eurof75": "eurofurence_bold",
    "millimetreA Bold 01": "millimetre_bold",
    "lmroman10-bold": "latin_modern_roman_bold",
    "OSP-DIN": "osp_din",
}


def strip_name(font_path: str | Path, variant: str | None = None) -> str:
    """'NimbusRoman-Bold.otf' -> 'nimbus_roman_bold'; with variant 'thin-narrow', 'nimbus_roman_bold-thin-narrow'."""
    stem = Path(font_path).stem
    if stem in STRIP_NAMES:
        name = STRIP_NAMES[stem]
    else:
        stem = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", stem)
        name = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")
    return f"{name}-{variant}" if variant else name


def font_variants(index: int, count: int) -> list[str]:
    """The `count` variants made for the index-th font: VARIANTS taken in turn, so that a
    list of fonts spreads every variant over fonts of every kind."""
    names = list(VARIANTS)
    return [names[(index + k) % len(names)] for k in range(count)]


def _disk_offsets(radius: int) -> list[tuple[int, int]]:
    r = np.arange(-radius, radius + 1)
    return [(dy, dx) for dy in r for dx in r if dy * dy + dx * dx <= radius * radius]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    # A round structuring element keeps the line width even along curves and diagonals.
    return _shift_all(mask, _disk_offsets(radius), grow=True)


def outline(mask: np.ndarray, radius: int) -> np.ndarray:
    """The band of pixels within `radius` of the mask's contour, on both sides."""
    return _dilate(mask, radius) & _dilate(~mask, radius)


def _filled_glyph(font: ImageFont.FreeTypeFont, ch: str) -> np.ndarray:
    """Boolean mask of the filled glyph cropped to its ink columns; baseline at row CANVAS_ROWS // 2."""
    left, _, right, _ = font.getbbox(ch, anchor="ls")
    pad = font.size  # room for overhangs the bbox may not report
    img = Image.new("L", (right - left + 2 * pad, CANVAS_ROWS), 0)
    ImageDraw.Draw(img).text((pad - left, CANVAS_ROWS // 2), ch, fill=255, font=font, anchor="ls")
    mask = np.asarray(img) >= 128
    cols = np.flatnonzero(mask.any(axis=0))
    return mask[:, cols[0]:cols[-1] + 1]


def _filled_alphabet(font_path: str, sizes: tuple[int, int]) -> list[np.ndarray]:
    """Filled masks of ALPHABET: figures at sizes[0], letters at sizes[1]."""
    figures, letters = (ImageFont.truetype(font_path, s) for s in sizes)
    return [_filled_glyph(figures if ch.isdigit() else letters, ch) for ch in ALPHABET]


def _ink_rows(mask: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    return int(rows[0]), int(rows[-1]) + 1


def point_sizes(font_path: str, outline_px: float = OUTLINE_PX) -> tuple[int, int]:
    """Supersampled pixel sizes for figures and for letters.

    Figures get FIGURE_HEIGHT, letters LETTER_SPAN from ascender top to descender bottom (outline
    included). Sized apart because the real captchas' figures are short for their letters,
    as in Palatino, while Times-like faces have tall figures.
    """
    ref = 50 * SS
    rows = [_ink_rows(m) for m in _filled_alphabet(font_path, (ref, ref))]
    figure_height = np.mean([b - t for t, b in rows[:10]])
    letter_span = max(b for _, b in rows[10:]) - min(t for t, _ in rows[10:])
    return (round(ref * (FIGURE_HEIGHT - outline_px) * SS / figure_height),
            round(ref * (LETTER_SPAN - outline_px) * SS / letter_span))


def _x_scales(masks: list[np.ndarray], radius: int, width_scale: float = 1.0) -> list[float]:
    """Per glyph horizontal scale: figures and letters condensed to the real faces' mean widths,
    then times width_scale."""
    def scale(group: list[np.ndarray], target: float) -> float:
        return min(1.0, target * SS / np.mean([m.shape[1] for m in group])) * width_scale

    figure, letter = scale(masks[:10], FIGURE_WIDTH), scale(masks[10:], LETTER_WIDTH)
    return [min(figure if i < 10 else letter, _widest(radius) / m.shape[1]) for i, m in enumerate(masks)]


def _widest(radius: int) -> int:
    """The widest a filled glyph may be (supersampled columns) for its outline to fit MAX_SPAN (m, w)."""
    return (MAX_SPAN - 2 * MARGIN) * SS - 2 * radius


def warp_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One filled glyph (bool, full-height rows) with random proportions: its middle row moved up
    or down by up to WARP_WAIST of its ink height (the halves stretch to match), and its rows
    widened towards the top and narrowed towards the bottom, or the other way round, by up to
    WARP_TAPER. Sampled backwards (each output pixel reads its source), so nothing tears."""
    top, bottom = _ink_rows(mask)
    height = bottom - top
    waist = rng.uniform(-WARP_WAIST, WARP_WAIST)
    taper = rng.uniform(-WARP_TAPER, WARP_TAPER)
    pad = int(np.ceil(mask.shape[1] * WARP_TAPER)) + 1
    src = np.pad(mask, ((0, 0), (pad, pad)))
    out = np.zeros_like(src)
    centre = (src.shape[1] - 1) / 2
    cols = np.arange(src.shape[1])
    mid = 0.5 + waist  # where the source's middle row lands, as a fraction of the height
    for y in range(top, bottom):
        r = (y + 0.5 - top) / height  # 0 at the top, 1 at the bottom
        s = r * 0.5 / mid if r < mid else 0.5 + (r - mid) * 0.5 / (1 - mid)
        sy = min(bottom - 1, max(top, int(top + s * height)))
        factor = 1 + taper * (1 - 2 * r)
        sx = np.round(centre + (cols - centre) / factor).astype(int)
        ok = (sx >= 0) & (sx < src.shape[1])
        out[y, ok] = src[sy, sx[ok]]
    ink = np.flatnonzero(out.any(axis=0))
    return out[:, ink[0]:ink[-1] + 1]


def _line_offsets(length: int, angle: float) -> list[tuple[int, int]]:
    """(dy, dx) steps of a centred line segment `length` supersampled px long at `angle` degrees
    from the x axis, y pointing up as on a page."""
    t = np.arange(length + 1) - length / 2
    dx, dy = np.cos(np.radians(angle)), -np.sin(np.radians(angle))
    return sorted({(int(round(k * dy)), int(round(k * dx))) for k in t})


def _shift_all(mask: np.ndarray, offsets: list[tuple[int, int]], grow: bool) -> np.ndarray:
    """Dilation (grow) or erosion of a bool mask by the set of offsets."""
    pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    src = np.pad(mask, pad)
    h, w = mask.shape
    out = np.zeros_like(mask) if grow else np.ones_like(mask)
    for dy, dx in offsets:
        view = src[pad + dy:pad + dy + h, pad + dx:pad + dx + w]
        out = out | view if grow else out & view
    return out


def _stressed(mask: np.ndarray, angle: float, length: int) -> np.ndarray:
    thinned = _shift_all(mask, _line_offsets(length, angle + 90), grow=False)
    return _shift_all(thinned, _line_offsets(length, angle), grow=True)


def _same_shape(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether a stressed glyph kept its strokes: no more pieces than before, and about its
    extent (a 7 whose diagonal vanished keeps only its bar)."""
    (t0, b0), (t1, b1) = _ink_rows(before), _ink_rows(after)
    w0, w1 = (np.flatnonzero(m.any(axis=0)) for m in (before, after))
    return (ndimage.label(after)[1] <= ndimage.label(before)[1]
            and b1 - t1 >= 0.9 * (b0 - t0) and w1[-1] - w1[0] >= 0.8 * (w0[-1] - w0[0]))


def stress_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One filled glyph (bool) with its stroke contrast changed: eroded by a line across a random
    axis near the falling diagonal (strokes along the axis lose that width), then dilated by a
    line along it (strokes across the axis, the rising ones, gain it). Erosion first, so light strokes come
    out of heavy ones; where a stroke would vanish or break, the line is shortened."""
    angle = 135.0 + rng.uniform(-STRESS_SPREAD, STRESS_SPREAD)
    length = int(round(rng.uniform(0.25, 1.0) * STRESS_MAX * SS))
    grown = np.pad(mask, ((0, 0), (length + 1, length + 1)))
    while length >= 2:
        out = _stressed(grown, angle, length)
        if out.any() and _same_shape(grown, out):
            ink = np.flatnonzero(out.any(axis=0))
            return out[:, ink[0]:ink[-1] + 1]
        length = int(length * 0.7)
    return mask


def _glyph_alpha(mask: np.ndarray, radius: int, x_scale: float) -> np.ndarray:
    """Outline band of one glyph, padded to its span and box-filtered to alpha (uint8)."""
    width = round(mask.shape[1] * x_scale)
    if width != mask.shape[1]:
        # Squeeze the filled glyph before outlining, so the line keeps its width.
        img = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, mask.shape[0]), Image.BILINEAR)
        mask = np.asarray(img) >= 128
    band = outline(np.pad(mask, ((0, 0), (radius, radius))), radius)
    ink_cols = -(-band.shape[1] // SS)
    span = max(MIN_SPAN, ink_cols + 2 * MARGIN)
    left = (span - ink_cols) // 2 * SS
    canvas = np.zeros((band.shape[0], span * SS), dtype=np.uint8)
    canvas[:, left:left + band.shape[1]] = band * 255
    return np.asarray(Image.fromarray(canvas).reduce(SS))


def warp_seed(variant: str | None) -> int | None:
    """'warp3' -> 3 (the seed of a warped strip); None for the others."""
    match = re.fullmatch(r"warp(\d+)", variant or "")
    return int(match[1]) if match else None


def stress_seed(variant: str | None) -> int | None:
    """'stress2' -> 2 (the seed of a stressed strip); None for the others."""
    match = re.fullmatch(r"stress(\d+)", variant or "")
    return int(match[1]) if match else None


def render_strip(font_path: str | Path, variant: str | None = None) -> Image.Image:
    """The KCAPTCHA font strip (RGBA, HEIGHT rows) for one font file: calibrated, a VARIANTS one,
    'warp<N>': calibrated line and mean widths, every glyph's proportions drawn at random
    (seed N and the font's name, so a strip is the same on every run), or 'stress<N>': the same
    for every glyph's stroke contrast."""
    font_path = str(font_path)
    seed, stress = warp_seed(variant), stress_seed(variant)
    if variant is not None and seed is None and stress is None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: one of {', '.join(VARIANTS)}, warp<N> or stress<N>")
    outline_px, width_scale = VARIANTS[variant] if variant in VARIANTS else (OUTLINE_PX, 1.0)
    radius = round(outline_px * SS / 2)
    masks = _filled_alphabet(font_path, point_sizes(font_path, outline_px))
    rows = [_ink_rows(m) for m in masks]
    top, bottom = min(t for t, _ in rows), max(b for _, b in rows)
    # Centre the ink in rows 1..69, with the baseline on a whole output row so every strip
    # samples its glyphs alike.
    glyph_rows = (HEIGHT - 1) * SS
    baseline = CANVAS_ROWS // 2
    first = baseline - round((baseline - (top + bottom - glyph_rows) / 2) / SS) * SS
    masks = [m[first:first + glyph_rows] for m in masks]
    scales = _x_scales(masks, radius, width_scale)
    if seed is not None:
        rng = np.random.default_rng([seed, *strip_name(font_path).encode()])
        masks = [warp_mask(m, rng) for m in masks]
        scales = [min(s * rng.uniform(*WARP_WIDTH), _widest(radius) / m.shape[1]) for s, m in zip(scales, masks)]
    if stress is not None:
        # A seed apart from warp<N>'s, so stress1 is not warp1's glyph draws reused.
        rng = np.random.default_rng([stress, 1, *strip_name(font_path).encode()])
        masks = [stress_mask(m, rng) for m in masks]
        scales = [min(s, _widest(radius) / m.shape[1]) for s, m in zip(scales, masks)]
    alphas = [_glyph_alpha(m, radius, s) for m, s in zip(masks, scales)]

    width = GAP + sum(a.shape[1] + GAP for a in alphas)
    strip = np.zeros((HEIGHT, width, 4), dtype=np.uint8)
    x = GAP
    for a in alphas:
        w = a.shape[1]
        strip[0, x:x + w, 3] = 255
        strip[1:, x:x + w, 3] = a
        x += w + GAP
    return Image.fromarray(strip, "RGBA")


def validate_strip(strip: Image.Image) -> list[tuple[int, int]]:
    """The glyphs' [start, end) columns from the marker row; ValueError if this is no valid strip."""
    if strip.mode != "RGBA":
        raise ValueError(f"font strip must be RGBA, got mode {strip.mode}")
    if strip.height != HEIGHT:
        raise ValueError(f"font strip must be {HEIGHT} px tall, got {strip.height}")
    alpha = np.asarray(strip)[:, :, 3]
    opaque = alpha[0] > 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], opaque.astype(np.int8), [0]])))
    runs = [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2])]
    if len(runs) != len(ALPHABET):
        raise ValueError(f"font strip has {len(runs)} marker runs in row 0, expected {len(ALPHABET)} "
                         f"(one per glyph of '{ALPHABET}')")
    stray = np.flatnonzero(alpha[1:, ~opaque].any(axis=0))
    if stray.size:
        raise ValueError(f"font strip has ink in {stray.size} column(s) outside the marker runs")
    return runs


def save_png(img: Image.Image, path: Path) -> None:
    # A temporary file beside the target and a rename: readers never see half a PNG.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_installed(paths: list[str]) -> None:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        lines = [f"  {p}" + (f"  (apt-get install {KNOWN_FONTS[p]})" if p in KNOWN_FONTS else "")
                 for p in missing]
        sys.exit("font file(s) not found:\n" + "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fonts", nargs="*", default=list(DEFAULT_FONTS),
                    help="font files (.otf/.ttf); default: the bold serifs listed in DEFAULT_FONTS")
    ap.add_argument("--unseen", action="store_true",
                    help="the held-out families of UNSEEN_FONTS, calibrated strips only, instead of the default fonts")
    ap.add_argument("--library", action="store_true",
                    help="the adaptation library of LIBRARY_FONTS (sans, rounded, monospace, oblique) instead "
                         "of the default fonts; with --variants 4 as kcaptcha_bbox/library holds it")
    ap.add_argument("--variants", type=int, default=1, choices=range(len(VARIANTS) + 1),
                    help="variant strips per font besides the calibrated one, VARIANTS taken in turn "
                         "(default: 1)")
    ap.add_argument("--warps", type=int, default=0,
                    help="warped strips per font (every glyph's proportions random; warp1, warp2, ...; default: 0)")
    ap.add_argument("--stresses", type=int, default=0,
                    help="stressed strips per font (every glyph's stroke contrast random; stress1, ...; default: 0)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "kcaptcha_bbox" / "fonts",
                    help="folder for the <name>.png strips (default: kcaptcha_bbox/fonts)")
    args = ap.parse_args()
    if args.warps < 0 or args.stresses < 0:
        ap.error(f"--warps and --stresses must be 0 or more, got {args.warps} and {args.stresses}")
    if args.unseen:
        args.fonts, args.variants = list(UNSEEN_FONTS), 0
    if args.library:
        args.fonts = list(LIBRARY_FONTS)
    check_installed(args.fonts)
    args.out.mkdir(parents=True, exist_ok=True)
    warps = [f"warp{k + 1}" for k in range(args.warps)] + [f"stress{k + 1}" for k in range(args.stresses)]
    for i, font_path in enumerate(args.fonts):
        for variant in [None, *font_variants(i, args.variants), *warps]:
            strip = render_strip(font_path, variant)
            validate_strip(strip)
            path = args.out / f"{strip_name(font_path, variant)}.png"
            save_png(strip, path)
            print(f"{path}  {strip.width}x{strip.height}")


if __name__ == "__main__":
    main()
