"""Find the font strips a site draws with, by analysis by synthesis.

Each candidate strip renders captchas under the site's inferred config; one detector boxes the
glyphs of those and of the site's labelled captchas alike (so its habits cancel out), and every
box becomes a small darkness map. Per character, the site's mean map is compared with the
candidate's (correlation) and so are the boxes' widths: the strips whose glyphs look most like
the site's win. A strip's family is its name before the variant suffix (`-thin-narrow`, ...):
families are screened with their calibrated strip, then the best few with every variant.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from kdetect.data import renderer, site_config

TEMPLATE_SIZE = (16, 24)  # (width, height) of a glyph's darkness map
# Box widths count beside shape: a monospace 'm' and a proportional one differ mostly there.
WIDTH_WEIGHT = 0.5
# Glyph boxes of a captcha: [(x0, y0, x1, y1, char), ...] for the captchas whose boxes could be
# told apart, given the images and their answers.
BoxFinder = Callable[[list[np.ndarray], list[str]], list[list[tuple[float, float, float, float, str]] | None]]


@dataclass(frozen=True)
class Templates:
    """Per character: the mean darkness map of its boxes, their mean width and how many there were."""

    maps: dict[str, np.ndarray]
    widths: dict[str, float]
    counts: dict[str, int]


def darkness(pixels: np.ndarray) -> np.ndarray:
    """The captcha's darkness map (site_config.darkness), after a 3x3 median that takes out the
    speckles and holes KCAPTCHA's noise adds, which would otherwise swamp the shape differences
    between faces."""
    dark = site_config.darkness(pixels, *site_config.paper_and_ink(pixels))
    return np.asarray(Image.fromarray((dark * 255).astype(np.uint8)).filter(ImageFilter.MedianFilter(3)),
                      np.float32) / 255


def templates(images: list[np.ndarray], boxes: list[list | None]) -> Templates:
    """Per character, the mean darkness map of its boxes (each resized to TEMPLATE_SIZE)."""
    sums, widths, counts = defaultdict(float), defaultdict(float), defaultdict(int)
    for pixels, glyphs in zip(images, boxes):
        if not glyphs:
            continue
        dark = darkness(pixels)
        h, w = dark.shape
        for x0, y0, x1, y1, ch in glyphs:
            x0, x1 = int(max(0, np.floor(x0))), int(min(w, np.ceil(x1)))
            y0, y1 = int(max(0, np.floor(y0))), int(min(h, np.ceil(y1)))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            crop = Image.fromarray((dark[y0:y1, x0:x1] * 255).astype(np.uint8)).resize(TEMPLATE_SIZE, Image.BILINEAR)
            sums[ch] = sums[ch] + np.asarray(crop, np.float32) / 255
            widths[ch] += (x1 - x0) / h
            counts[ch] += 1
    return Templates({c: sums[c] / counts[c] for c in counts}, {c: widths[c] / counts[c] for c in counts}, dict(counts))


def similarity(site: Templates, candidate: Templates, min_count: int = 2) -> float:
    """How alike two sets of glyphs are: per shared character the correlation of the mean maps
    minus WIDTH_WEIGHT x the relative width difference, weighted by the site's count; -1 where
    they share no character."""
    total, weight = 0.0, 0.0
    for ch, n in site.counts.items():
        if n < min_count or candidate.counts.get(ch, 0) < min_count:
            continue
        a, b = site.maps[ch].ravel(), candidate.maps[ch].ravel()
        a, b = a - a.mean(), b - b.mean()
        corr = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-6))
        width = abs(np.log(candidate.widths[ch] / site.widths[ch]))
        total += n * (corr - WIDTH_WEIGHT * width)
        weight += n
    return total / weight if weight else -1.0


def family(strip: Path) -> str:
    return strip.stem.split("-")[0]


def library_strips(folders: list[Path]) -> list[Path]:
    """Every strip (PNG) of the folders, each once."""
    seen, strips = set(), []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.png")):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                strips.append(path)
    return strips


def render_with(config: dict, strip: Path, count: int, seed: int
                ) -> tuple[list[np.ndarray], list[str], list[list[tuple]]]:
    """count captchas of config drawn with one strip: images, answers and exact glyph boxes."""
    with tempfile.TemporaryDirectory(prefix="kdetect-fonts-") as scratch:
        path = Path(scratch) / "config.json"
        path.write_text(json.dumps({**config, "fonts": [str(strip.resolve())]}))
        images, texts, boxes = [], [], []
        for ann in renderer.render(path, seed, 0, count, Path(scratch)):
            with Image.open(Path(scratch) / ann["file"]) as im:
                images.append(np.asarray(im.convert("RGB")))
            texts.append(ann["text"])
            boxes.append([tuple(b) for b in ann["boxes"] if b])
    return images, texts, boxes


def rank_strips(config: dict, strips: list[Path], site: Templates, find_boxes: BoxFinder | None = None,
                count: int = 24, seed: int = 0, finalists: int = 5, progress: Callable[[int], None] = lambda n: None
                ) -> list[tuple[Path, float]]:
    """(strip, similarity) best first: every family's calibrated strip (the one without a variant
    suffix, else its first), then every strip of the `finalists` best families. find_boxes:
    what boxed the site's glyphs, to box the candidates' alike; None: the renderer's exact boxes."""
    def score(strip: Path) -> float:
        images, texts, exact = render_with(config, strip, count, seed)
        progress(1)
        return similarity(site, templates(images, exact if find_boxes is None else find_boxes(images, texts)))

    by_family: dict[str, list[Path]] = defaultdict(list)
    for strip in strips:
        by_family[family(strip)].append(strip)
    heads = {name: min(group, key=lambda p: ("-" in p.stem, p.name)) for name, group in by_family.items()}
    scores = {head: score(head) for head in heads.values()}
    best_families = sorted(heads, key=lambda name: -scores[heads[name]])[:finalists]
    for name in best_families:
        for strip in by_family[name]:
            if strip not in scores:
                scores[strip] = score(strip)
    return sorted(scores.items(), key=lambda item: -item[1])


def choose_strips(ranked: list[tuple[Path, float]], most: int = 4, per_family: int = 2,
                  margin: float = 0.05) -> list[Path]:
    """The best strips within `margin` of the best score, at most `per_family` of a family and
    `most` in all (a site may draw with two or three faces; variants of one face are near-twins)."""
    chosen, families = [], defaultdict(int)
    top = ranked[0][1]
    for strip, value in ranked:
        if len(chosen) == most or value < top - margin:
            break
        if families[family(strip)] < per_family:
            chosen.append(strip)
            families[family(strip)] += 1
    return chosen
