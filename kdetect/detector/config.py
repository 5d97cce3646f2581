"""The detector's configuration: everything needed to rebuild, feed and decode a trained model."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kdetect.charset import CHARSET
from kdetect.configio import JsonConfig, check_input_size
from kdetect.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig(JsonConfig):
    what = "model config"

    # What a package's config.json describes; packages written before the classifier baseline
    # existed have no "kind" and are detectors.
    kind: str = "detector"
    # KCAPTCHA is 160 px wide and 60 or 80 tall: 64x160 keeps the width (glyphs are thin and
    # touching, so horizontal detail matters most) and is a multiple of both strides.
    input_height: int = 64
    input_width: int = 160
    # Channels of darknet-tiny are 16, 32, ..., 1024 times this; 0.5 keeps the model a few MB.
    width_multiplier: float = 0.5
    charset: str = CHARSET
    # (w, h) in input pixels, three per scale, small scale first; k-means over the training boxes
    # replaces these (see anchors.py).
    anchors: tuple[tuple[float, float], ...] = ((14, 30), (18, 40), (22, 46), (26, 50), (32, 52), (40, 56))
    # Strides 8 and 16 rather than YOLOv3-tiny's 16 and 32: packed glyph centres can be ~10 px
    # apart, and at stride 32 a 64x160 image would be a 2x5 grid where several glyphs share a cell.
    strides: tuple[int, int] = (8, 16)
    anchors_per_scale: int = 3
    score_threshold: float = 0.25
    nms_iou: float = 0.45
    ignore_iou: float = 0.5
    max_boxes: int = 16
    # The alphabets (allowed_symbols) the training data drew answers from, a repeated one drawn
    # that many times as often: the decoder guesses which one a captcha uses (kdetect/alphabet.py).
    # Empty: no guess, every character may be read.
    alphabets: tuple[str, ...] = ()
    # False in a compacted package (kdetect/training/compact.py): batch norm folded into the convolutions.
    batch_norm: bool = True
    # The one answer length of the site a model was fine-tuned for (kdetect finetune records it
    # when every label has it); decoding then reads that many glyphs. None: any length.
    answer_length: int | None = None
    # The shortest and longest answer of a site `kdetect adapt` was run on: a reading outside the
    # range is read again at the nearest length in it. None: any length.
    answer_lengths: tuple[int, int] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.charset)

    def scale_anchors(self, scale: int) -> tuple[tuple[float, float], ...]:
        k = self.anchors_per_scale
        return self.anchors[scale * k:(scale + 1) * k]

    def grid(self, scale: int) -> tuple[int, int]:
        return self.input_height // self.strides[scale], self.input_width // self.strides[scale]

    @classmethod
    def convert(cls, data: dict) -> dict:
        if "anchors" in data:
            data["anchors"] = tuple(tuple(_number(v, "anchors") for v in a) for a in data["anchors"])
        if "alphabets" in data:
            data["alphabets"] = tuple(data["alphabets"])
        if "strides" in data:
            data["strides"] = tuple(data["strides"])
        if isinstance(data.get("answer_lengths"), list):
            data["answer_lengths"] = tuple(data["answer_lengths"])
        return data

    def validate(self) -> None:
        # A package's config.json may come from anyone: every value the network is built from is
        # checked here, before a layer (or a gigabyte) is allocated.
        if self.kind != "detector":
            raise ConfigError(f"this config describes a {self.kind!r} model, not a detector")
        check_input_size(self.input_height, self.input_width, "the detector's")
        if not 0 < self.width_multiplier <= 4:
            raise ConfigError(f"width_multiplier must be in (0, 4], not {self.width_multiplier}")
        # build_detector's layers make exactly these two scales; other strides describe another network.
        if tuple(self.strides) != (8, 16):
            raise ConfigError(f"strides must be [8, 16] (the network's two scales), not {list(self.strides)}")
        if not 1 <= self.anchors_per_scale <= 9:
            raise ConfigError(f"anchors_per_scale must be 1 to 9, not {self.anchors_per_scale}")
        longest = 4 * max(self.input_height, self.input_width)
        for anchor in self.anchors:
            if len(anchor) != 2 or not all(0 < v <= longest for v in anchor):
                raise ConfigError(f"anchor {list(anchor)} must be [width, height], each above 0 and at most "
                                  f"{longest} px")
        if not self.charset or len(self.charset) > 256:
            raise ConfigError(f"charset must hold 1 to 256 characters, not {len(self.charset)}")
        if any(not c.isprintable() or c.isspace() for c in self.charset):
            raise ConfigError(f"charset {self.charset!r} may hold only printable characters other than spaces")
        for name, least in (("score_threshold", 0.0), ("nms_iou", 1e-6), ("ignore_iou", 1e-6)):
            if not least <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must lie between {least:g} and 1, not {getattr(self, name)}")
        if not 1 <= self.max_boxes <= 256:
            raise ConfigError(f"max_boxes must be 1 to 256, not {self.max_boxes}")
        if len(self.anchors) != len(self.strides) * self.anchors_per_scale:
            raise ConfigError(f"{len(self.anchors)} anchors given; {len(self.strides)} scales x "
                              f"{self.anchors_per_scale} anchors are needed")
        for s in self.strides:
            if self.input_height % s or self.input_width % s:
                raise ConfigError(f"input {self.input_height}x{self.input_width} is not a multiple of stride {s}")
        if len(set(self.charset)) != len(self.charset):
            raise ConfigError("charset has repeated characters")
        if self.answer_length is not None and not 1 <= self.answer_length <= self.max_boxes:
            raise ConfigError(f"answer_length must be 1 to max_boxes ({self.max_boxes}) or null, not {self.answer_length}")
        if self.answer_lengths is not None and not (
                len(self.answer_lengths) == 2 and 1 <= self.answer_lengths[0] <= self.answer_lengths[1] <= self.max_boxes):
            raise ConfigError(f"answer_lengths must be [shortest, longest] within 1 to max_boxes ({self.max_boxes}) "
                              f"or null, not {self.answer_lengths}")
        for alphabet in self.alphabets:
            if not isinstance(alphabet, str) or not alphabet or set(alphabet) - set(self.charset):
                raise ConfigError(f"alphabet {alphabet!r} must be a non-empty string of charset characters "
                                  f"({self.charset!r})")


def _number(value: object, name: str) -> float:
    """A finite JSON number as a float; anything else (a string, a bool, NaN) is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must hold finite numbers, not {value!r}")
    return float(value)
