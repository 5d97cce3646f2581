"""The shift vote: unsure captchas read again moved a few pixels, the answer most readings give wins."""

import json

import numpy as np
import pytest

from kdetect.errors import ConfigError
from kdetect.glyphs.config import GlyphConfig
from kdetect.readings import Glyph, Reading
from kdetect.serving.shift_vote import moved_back, pixel_shift, read_with_votes, shifted, vote


def reading(text: str, confidence: float = 0.5, x0: float = 10.0) -> Reading:
    return Reading(text, confidence, tuple(Glyph(c, 0.9, (x0 + 8 * i, 5.0, x0 + 8 * i + 6, 20.0)) for i, c in enumerate(text)))


def test_shifted_moves_the_content_and_fills_with_the_paper_colour():
    images = np.full((2, 6, 8, 3), 230, np.uint8)
    images[1] = 200
    images[:, 2, 3] = (10, 20, 30)  # one ink pixel
    moved = shifted(images, 2, -1)
    assert moved.shape == images.shape and moved.dtype == np.uint8
    assert (moved[:, 1, 5] == (10, 20, 30)).all()
    assert (moved[:, 2, 3] != (10, 20, 30)).any()
    # The uncovered columns and row take each image's own paper.
    assert (moved[0, :, :2] == 230).all() and (moved[1, :, :2] == 200).all() and (moved[1, -1] == 200).all()
    assert (shifted(images, 0, 0) == images).all()
    assert (shifted(images, 8, 0)[0] == 230).all()  # moved off the canvas: paper only


def test_the_paper_is_the_median_of_top_and_bottom_rows_not_the_ink_on_them():
    images = np.full((1, 4, 10, 3), 240, np.uint8)
    images[0, 0, :3] = 0  # ink reaching the top row in 3 of 20 edge pixels
    assert (shifted(images, 3, 0)[0, :, :3] == 240).all()


def test_a_shift_in_network_pixels_scales_to_the_image():
    assert pixel_shift((2, 0), (160, 60), (160, 64)) == (2, 0)
    assert pixel_shift((2, -2), (320, 128), (160, 64)) == (4, -4)
    # Halves round up, the same way in JavaScript (Math.floor(x + 0.5)).
    assert pixel_shift((1, 0), (80, 64), (160, 64)) == (1, 0)
    assert pixel_shift((-1, 0), (80, 64), (160, 64)) == (0, 0)


def test_moved_back_puts_the_boxes_where_the_glyphs_are_in_the_original():
    r = moved_back(reading("12", x0=12.0), 4, -2, (30, 40))
    assert r.text == "12" and r.confidence == 0.5
    assert r.glyphs[0].box == (8.0, 7.0, 14.0, 22.0)
    assert r.glyphs[1].box == (16.0, 7.0, 22.0, 22.0)
    assert moved_back(reading("1", x0=1.0), 4, 0, (30, 40)).glyphs[0].box[0] == 0.0  # clipped to the image
    assert moved_back(Reading("7", 0.4, (Glyph("7", 0.4, None),)), 3, 3, (30, 40)).glyphs[0].box is None


def test_the_vote_takes_the_most_read_text_and_a_tie_goes_to_the_first():
    assert vote([reading("ab"), reading("ac"), reading("ac")]).text == "ac"
    assert vote([reading("ab"), reading("ac"), reading("ac", 0.9), reading("ab", 0.99)]).text == "ab"
    first = reading("x", 0.1)
    assert vote([first, reading("y", 0.9)]) is first


def test_only_unsure_captchas_are_read_again_and_the_majority_wins():
    # A fake network: it reads each image's marker column, and errs when the image sits unshifted.
    images = np.full((3, 10, 20, 3), 255, np.uint8)
    calls = []

    def read(batch):
        calls.append(len(batch))
        out = []
        for im in batch:
            column = int(np.argmin(im[5, :, 0]))
            sure = im[0, 0, 1] == 255
            out.append(reading("sure" if sure else ("wrong" if column == 10 else "right"), 0.99 if sure else 0.3))
        return out

    images[:, 5, 10] = 0
    images[1:, :, :, 1] = 254  # captchas 1 and 2 read unsure
    images[1:, 5, 10] = (0, 254, 254)
    got = read_with_votes(images, (20, 10), (20, 10), read, [(2, 0), (-2, 0), (0, 1)], below=0.9)
    assert [r.text for r in got] == ["sure", "right", "right"]
    assert calls == [3, 2, 2, 2]  # the first reading of all three, then three shifts of the two unsure
    assert read_with_votes(images, (20, 10), (20, 10), read, [(2, 0)], below=0.1)[1].text == "wrong"


def test_vote_settings_round_trip_and_bad_ones_are_refused():
    gcfg = GlyphConfig(vote_shifts=((2, 0), (-2, 0)), vote_below=0.95)
    assert GlyphConfig.from_dict(json.loads(gcfg.to_json())) == gcfg
    assert GlyphConfig.from_dict({}).vote_shifts == ()
    for bad, what in [({"vote_shifts": [[2]]}, "vote_shifts"), ({"vote_shifts": [[2, 0.5]]}, "vote_shifts"),
                      ({"vote_shifts": "2,0"}, "vote_shifts"), ({"vote_shifts": [[40, 0]]}, "vote_shifts"),
                      ({"vote_below": 1.5}, "vote_below")]:
        with pytest.raises(ConfigError, match=what):
            GlyphConfig.from_dict(bad)


def test_settled_captchas_are_not_read_at_the_later_shifts():
    images = np.full((2, 10, 20, 3), 250, np.uint8)
    images[:, 5, 10, 0] = 0
    images[1, 5, 10, 1] = 7  # captcha 1 reads by where its marker is; captcha 0 always reads "a"
    calls = []

    def read(batch):
        calls.append(len(batch))
        return [reading("a" if im[5, :, 1].min() == 250 else f"b{int(np.argmin(im[5, :, 1])) % 3}", 0.3) for im in batch]

    got = read_with_votes(images, (20, 10), (20, 10), read, [(1, 0), (3, 0), (2, 0), (-3, 0)], below=0.9, settle_after=2)
    assert calls == [2, 2, 2, 1, 1]
    assert got[0].text == "a"
    # Captcha 1 read b1 unshifted, then b2, b1, b0, b1 at the shifts: b1 wins three of five.
    assert got[1].text == "b1"
    with pytest.raises(ConfigError, match="vote_settle_after"):
        GlyphConfig(vote_shifts=((2, 0),), vote_settle_after=2).validate()


def test_a_package_card_states_the_vote_its_config_asks_for():
    from kdetect.training.packaging import vote_line

    gcfg = json.loads(GlyphConfig(vote_shifts=((4, 0), (-4, 0), (0, 2)), vote_below=0.9, vote_settle_after=2).to_json())
    line = vote_line(gcfg)
    assert "under 0.9" in line and "(4, 0), (-4, 0), (0, 2)" in line and "past the first 2" in line
    assert vote_line(json.loads(GlyphConfig().to_json())) == ""
