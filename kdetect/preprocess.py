"""The one preprocessing function: training, `solve` and the exported graph all call this.

Resizing and scaling live here and nowhere else, so a model never sees pixels prepared
differently from the ones it was trained on.
"""

from __future__ import annotations

from typing import Protocol

from keras import ops


class InputSize(Protocol):
    """Any model config with an input size: the detector's ModelConfig or the ClassifierConfig."""

    @property
    def input_height(self) -> int: ...

    @property
    def input_width(self) -> int: ...


def preprocess(images, cfg: InputSize):
    """RGB images [..., H, W, 3] of any size, 0..255 -> float32 [..., input_height, input_width, 3] in 0..1."""
    images = ops.cast(images, "float32")
    resized = ops.image.resize(images, (cfg.input_height, cfg.input_width), interpolation="bilinear",
                               antialias=False)
    return resized / 255.0


def with_preprocessing(network, cfg: InputSize, dtype: str = "float32"):
    """A Keras model: RGB images [B, H, W, 3] of any size, 0..255 in `dtype` -> network(preprocess(images)).
    What the exported and converted graphs run, so they prepare pixels exactly as training did."""
    import keras

    image = keras.Input((None, None, 3), dtype=dtype, name="image")
    return keras.Model(image, network(preprocess(image, cfg), training=False), name="kdetect_serving")
