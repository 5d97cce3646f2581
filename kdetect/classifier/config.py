"""The classifier's configuration: everything needed to rebuild and feed a trained baseline."""

from __future__ import annotations

from dataclasses import dataclass

from kdetect.charset import CHARSET
from kdetect.configio import JsonConfig, check_input_size
from kdetect.errors import ConfigError

BACKBONES = ("small", "mobilenetv2", "densenet121")


@dataclass(frozen=True)
class ClassifierConfig(JsonConfig):
    what = "classifier config"

    kind: str = "classifier"
    backbone: str = "small"
    length: int = 2  # answer positions: the one answer length this model reads
    charset: str = CHARSET
    # The detector's input size, so both models see the same pixels (and the keras.applications
    # backbones get the 3 channels and >= 32 px they need).
    input_height: int = 64
    input_width: int = 160
    # None: random initial weights. "imagenet" (densenet121 and mobilenetv2 only) downloads
    # pretrained ones when the model is first built.
    weights: str | None = None
    # Multiplies the small backbone's filters, as the detector's width_multiplier does: 0.5 costs
    # a quarter of the compute, which on a 2-core CPU decides whether a baseline trains in a session.
    width_multiplier: float = 1.0

    @property
    def num_classes(self) -> int:
        return len(self.charset)

    def validate(self) -> None:
        if self.kind != "classifier":
            raise ConfigError(f"this config describes a {self.kind!r} model, not a classifier")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES)}")
        # 32 px at least: keras.applications backbones need it.
        check_input_size(self.input_height, self.input_width, "the classifier's", least=32)
        if not 1 <= self.length <= 64:
            raise ConfigError(f"length must be 1 to 64, not {self.length}")
        if self.weights not in (None, "imagenet"):
            raise ConfigError(f"weights must be null or \"imagenet\", not {self.weights!r}")
        if not 0 < self.width_multiplier <= 4:
            raise ConfigError(f"width_multiplier must be in (0, 4], not {self.width_multiplier}")
        if self.width_multiplier != 1.0 and self.backbone != "small":
            raise ConfigError("width_multiplier applies to the small backbone only; use 1 for keras.applications")
        if self.weights and self.backbone == "small":
            raise ConfigError("the small backbone has no pretrained weights; use weights null")
        if len(set(self.charset)) != len(self.charset):
            raise ConfigError("charset has repeated characters")
        if not self.charset or len(self.charset) > 256:
            raise ConfigError(f"charset must hold 1 to 256 characters, not {len(self.charset)}")
