"""Box exactness: each glyph rendered alone, through the same random draws, fills exactly its box."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdetect.data import renderer
from kdetect.presets import ENGINE_PRESETS, TRAINING_PRESET

IMAGES = 6


def ink_box(path: Path) -> list[int] | None:
    """[x0, y0, x1, y1) of the pixels that differ from the paper (the image's commonest colour)."""
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int32)
    flat = rgb.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    paper = colours[counts.argmax()]
    ys, xs = np.nonzero(np.any(rgb != paper, axis=-1))
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.slow  # draws captchas with the PHP renderer
@pytest.mark.parametrize("preset", [*ENGINE_PRESETS, TRAINING_PRESET])
def test_glyph_alone_fills_its_box_exactly(preset, make_config, tmp_path):
    config = make_config(preset, format="png")
    full = list(renderer.render(config, seed=11, start=0, count=IMAGES, out_dir=tmp_path / "full"))
    longest = max(len(a["text"]) for a in full)
    checked = 0
    for k in range(longest):
        solo = list(renderer.render(config, seed=11, start=0, count=IMAGES, out_dir=tmp_path / f"solo{k}", solo=k))
        for ann, alone in zip(full, solo):
            assert alone["text"] == ann["text"], "solo mode must draw the same random parameters"
            if k >= len(ann["text"]):
                continue
            box = ann["boxes"][k]
            expected = ink_box(tmp_path / f"solo{k}" / alone["file"])
            assert (box[:4] if box else None) == expected, f"{preset} image {ann['index']} glyph {k}"
            assert box is None or box[4] == ann["text"][k]
            checked += 1
    assert checked >= IMAGES * 2


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_boxes_hold_ink_in_the_full_image(make_config, tmp_path):
    """With neighbours and noise present, every box still covers dark pixels: no box lies off its glyph."""
    config = make_config("varlen", format="png", white_noise_density=0.0, black_noise_density=0.0)
    for ann in renderer.render(config, seed=5, start=0, count=10, out_dir=tmp_path):
        gray = np.asarray(Image.open(tmp_path / ann["file"]).convert("L"))
        for x0, y0, x1, y1, _ in ann["boxes"]:
            crop = gray[y0:y1, x0:x1]
            assert crop.min() < 128
            # Tight: the outermost rows and columns of a box carry some ink.
            for edge in (crop[0], crop[-1], crop[:, 0], crop[:, -1]):
                assert edge.min() < 255
