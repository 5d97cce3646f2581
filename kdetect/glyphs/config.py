"""The glyph reader's configuration, saved in a detector package as glyphs.json beside its weights."""

from __future__ import annotations

from dataclasses import dataclass

from kdetect.charset import CHARSET
from kdetect.configio import JsonConfig, check_input_size
from kdetect.errors import ConfigError


@dataclass(frozen=True)
class GlyphConfig(JsonConfig):
    what = "glyph reader config"

    # Crops are cut from the detector's own input (the image resized to 64x160), full height, so
    # glyph size matches what the detector saw and no second resampling happens anywhere.
    input_height: int = 64
    input_width: int = 160
    # Columns per crop, centred on a glyph: a glyph (at most ~26 px) and part of each neighbour,
    # which tells a doubled box between two glyphs from a glyph.
    crop_width: int = 40
    charset: str = CHARSET
    # Crops per image the served graph reads at once (the detector keeps at most max_boxes).
    max_glyphs: int = 16
    # A glyph whose crop reads "no glyph here" with at least this probability is dropped.
    reject_threshold: float = 0.5
    # The detector's candidates under its own score threshold down to this one are offered to
    # the glyph reader too: a faint glyph the detector would lose is kept if the crop is a glyph.
    proposal_threshold: float = 0.25
    # How much the detector's own class probabilities count beside the reader's: each glyph's
    # reading is reader x detector ** detector_weight. The two err differently (the reader is
    # sharper on fonts it trained on, the detector saw more shapes), so together they read fonts
    # neither trained on better than either. 0: the reader alone.
    detector_weight: float = 0.5
    # A second look: the detector's box centre for a glyph is often a few columns off, where the
    # crop reads "no glyph". A rejected proposal is read again relook_step, 2 x relook_step, ...
    # (relook_steps of them) columns to its right and left; the first crop that holds a glyph is
    # kept, unless it lies within relook_separation columns of a glyph already kept (then the
    # proposal was a doubled box). relook_steps 0: no second look.
    relook_step: int = 3
    relook_steps: int = 2
    relook_separation: int = 10
    # The shift vote (kdetect/serving/shift_vote.py): a captcha read with a confidence under
    # vote_below is read again moved by each (dx, dy) of vote_shifts, in network input pixels,
    # and the answer most readings give wins. No shifts: every captcha is read once. After the
    # first vote_settle_after shifts, a captcha whose readings all agree is settled (0: never).
    vote_shifts: tuple[tuple[int, int], ...] = ()
    vote_below: float = 0.0
    vote_settle_after: int = 0

    @property
    def relook_offsets(self) -> list[int]:
        """Where a second look reads, in columns from the first: +s, -s, +2s, -2s, ..."""
        return [sign * step * self.relook_step for step in range(1, self.relook_steps + 1) for sign in (1, -1)]

    @property
    def num_classes(self) -> int:
        """The charset's classes and one more: no glyph centred here."""
        return len(self.charset) + 1

    @classmethod
    def convert(cls, data: dict) -> dict:
        shifts = data.get("vote_shifts", ())
        if not isinstance(shifts, (list, tuple)) or not all(
                isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in s)
                for s in shifts):
            raise ConfigError(f"vote_shifts must be a list of [dx, dy] pairs of whole pixels, not {shifts!r}")
        data["vote_shifts"] = tuple(tuple(s) for s in shifts)
        return data

    def validate(self) -> None:
        # The reader is built at this size: a crafted glyphs.json must not ask for gigabytes.
        check_input_size(self.input_height, self.input_width, "the glyph reader's")
        if not 8 <= self.crop_width <= self.input_width:
            raise ConfigError(f"crop_width must lie between 8 and the input width {self.input_width}, "
                              f"not {self.crop_width}")
        if not 1 <= self.max_glyphs <= 64:
            raise ConfigError(f"max_glyphs must lie between 1 and 64, not {self.max_glyphs}")
        for name in ("reject_threshold", "proposal_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} must lie in (0, 1], not {value}")
        if not 0.0 <= self.detector_weight <= 4.0:
            raise ConfigError(f"detector_weight must lie between 0 and 4, not {self.detector_weight}")
        if not 1 <= self.relook_step <= self.crop_width // 2:
            raise ConfigError(f"relook_step must lie between 1 and half the crop width, not {self.relook_step}")
        if not 0 <= self.relook_steps <= 4:
            raise ConfigError(f"relook_steps must lie between 0 and 4, not {self.relook_steps}")
        if not 0 <= self.relook_separation <= self.input_width:
            raise ConfigError(f"relook_separation must lie between 0 and the input width, not {self.relook_separation}")
        if len(self.vote_shifts) > 16 or any(abs(v) > 16 for s in self.vote_shifts for v in s):
            raise ConfigError(f"vote_shifts takes at most 16 shifts of at most 16 pixels, not {list(self.vote_shifts)}")
        if not 0 <= self.vote_settle_after <= len(self.vote_shifts):
            raise ConfigError(f"vote_settle_after must lie between 0 and the number of vote_shifts, not {self.vote_settle_after}")
        if not 0.0 <= self.vote_below <= 1.0:
            raise ConfigError(f"vote_below must lie in [0, 1], not {self.vote_below}")
        if len(set(self.charset)) != len(self.charset):
            raise ConfigError("charset has repeated characters")
