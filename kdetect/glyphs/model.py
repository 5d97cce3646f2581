"""The glyph reader network, and the crops it reads.

crop_columns cuts the crops with a gather, inside the served graph, so Python (TFLite) and the
browser (TF.js) cut exactly the same pixels: the only inputs are the image and the crop centres.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kdetect.glyphs.config import GlyphConfig
from kdetect.preprocess import preprocess


def crop_columns(images, centres, width: int):
    """images [B, H, W, C] float, centres [B, K] int32 (column numbers) -> crops [B, K, H, width, C]:
    the `width` columns around each centre; columns past an edge repeat the edge column."""
    _, h, w, c = images.shape
    b = ops.shape(images)[0]
    k = ops.shape(centres)[1]
    offsets = ops.arange(width, dtype="int32") - width // 2
    # expand_dims and reshape, not [:, None]: TFLite has no builtin for a slice that adds axes.
    cols = ops.clip(ops.expand_dims(ops.cast(centres, "int32"), -1) + offsets, 0, w - 1)  # [B, K, width]
    cols = cols + ops.reshape(ops.arange(b, dtype="int32") * w, (-1, 1, 1))
    columns = ops.reshape(ops.transpose(images, (0, 2, 1, 3)), (-1, h * c))  # [B * W, H * C]
    crops = ops.take(columns, ops.reshape(cols, (-1,)), axis=0)  # [B * K * width, H * C]
    return ops.transpose(ops.reshape(crops, (b, k, width, h, c)), (0, 1, 3, 2, 4))


class CropColumns(layers.Layer):
    """crop_columns as a layer over concrete batch sizes, the crops of all images in one list
    [B * K, H, width, C]."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    def call(self, images, centres):
        crops = crop_columns(images, centres, self.width)
        return ops.reshape(crops, (-1, images.shape[1], self.width, images.shape[3]))


class PerImage(layers.Layer):
    """[B * K, ...] back to [B, K, ...], K the number of centres per image."""

    def call(self, values, centres):
        return ops.reshape(values, (ops.shape(centres)[0], ops.shape(centres)[1], values.shape[-1]))


class ReaderOutputs(layers.Layer):
    """The reader's logits [N, classes] -> class probabilities."""

    def call(self, outputs):
        return ops.softmax(outputs, axis=-1)


def build_glyph_reader(cfg: GlyphConfig) -> keras.Model:
    """Crops [N, input_height, crop_width, 3] in 0..1 -> logits [N, charset + 1] (the last: no glyph)."""
    crops = keras.Input((cfg.input_height, cfg.crop_width, 3), name="crops")
    x = crops
    # One conv per resolution: every captcha's few crops must cost less than its detection.
    for i, filters in enumerate((24, 48, 96)):
        x = layers.LeakyReLU(0.1)(layers.Conv2D(filters, 3, padding="same", name=f"g{i + 1}")(x))
        x = layers.MaxPooling2D(2)(x)
    x = layers.LeakyReLU(0.1)(layers.Conv2D(128, 3, padding="same", name="g4")(x))
    # Flattened, not pooled: where a stroke sits relative to the centre is the point.
    x = layers.Flatten()(x)
    x = layers.LeakyReLU(0.1)(layers.Dense(128, name="g_dense")(x))
    logits = layers.Dense(cfg.num_classes, name="g_logits")(x)
    return keras.Model(crops, logits, name="glyph_reader")


def serving_glyph_reader(reader: keras.Model, cfg: GlyphConfig, dtype: str = "float32") -> keras.Model:
    """RGB images [B, H, W, 3] of any size, 0..255, and crop centres [B, K] in the detector's
    input columns -> class probabilities [B, K, charset + 1]."""
    image = keras.Input((None, None, 3), dtype=dtype, name="image")
    centres = keras.Input((None,), dtype="int32", name="centres")
    crops = CropColumns(cfg.crop_width, name="crop")(preprocess(image, cfg), centres)  # [B * K, H, w, 3]
    probs = ReaderOutputs(name="probs")(reader(crops, training=False))
    return keras.Model([image, centres], PerImage(name="per_image")(probs, centres), name="kdetect_glyphs_serving")
