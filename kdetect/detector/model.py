"""YOLOv3-tiny in Keras 3: the darknet-tiny backbone and two detection scales.

Ours differs from the paper's tiny network in one place: the max-pool after the 128-filter
layer is dropped, so the two heads sit at strides 8 and 16 instead of 16 and 32 (see
ModelConfig.strides for why). Everything is plain Keras layers, so the graph exports to
SavedModel and TF.js without custom ops.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers

from kdetect.detector.config import ModelConfig
from kdetect.nn import scaled

# Objectness starts near 1% so the many empty cells do not swamp the first steps.
OBJECTNESS_PRIOR = 0.01


BN_EPSILON = 1e-3


def conv_block(x, filters: int, size: int = 3, name: str | None = None, batch_norm: bool = True):
    """Darknet's conv: no bias (batch norm has one), then leaky ReLU 0.1. Without batch norm
    (a shipped model, where it is folded into the kernel) the conv has the bias."""
    x = layers.Conv2D(filters, size, padding="same", use_bias=not batch_norm, name=name and f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=0.97, epsilon=BN_EPSILON, name=name and f"{name}_bn")(x)
    return layers.LeakyReLU(0.1, name=name and f"{name}_act")(x)


def head(x, cfg: ModelConfig, scale: int):
    """1x1 conv to A * (5 + C) values per cell -> [B, H, W, A, 5 + C] (tx, ty, tw, th, obj, classes)."""
    a, depth = cfg.anchors_per_scale, 5 + cfg.num_classes
    bias = np.zeros((a, depth), np.float32)
    bias[:, 4] = np.log(OBJECTNESS_PRIOR / (1 - OBJECTNESS_PRIOR))
    x = layers.Conv2D(a * depth, 1, bias_initializer=keras.initializers.Constant(bias.reshape(-1)),
                      name=f"head{cfg.strides[scale]}")(x)
    gh, gw = cfg.grid(scale)
    return layers.Reshape((gh, gw, a, depth), name=f"stride{cfg.strides[scale]}")(x)


def build_detector(cfg: ModelConfig) -> keras.Model:
    """Preprocessed images [B, H, W, 3] in 0..1 -> [stride-8 output, stride-16 output]."""
    f = [scaled(c, cfg.width_multiplier, least=4) for c in (16, 32, 64, 128, 256, 512, 1024)]
    conv = functools.partial(conv_block, batch_norm=cfg.batch_norm)
    inputs = keras.Input((cfg.input_height, cfg.input_width, 3), name="image")
    x = inputs
    for i, filters in enumerate(f[:3]):
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(conv(x, filters, name=f"c{i + 1}"))  # -> stride 8
    x = conv(x, f[3], name="c4")
    route8 = conv(x, f[4], name="c5")  # [B, H/8, W/8, 256m]
    x = layers.MaxPooling2D(2, name="pool5")(route8)  # -> stride 16
    x = conv(x, f[5], name="c6")
    x = layers.MaxPooling2D(2, strides=1, padding="same", name="pool6")(x)
    x = conv(x, f[6], name="c7")
    route16 = conv(x, f[4], 1, name="c8")  # [B, H/16, W/16, 256m]
    out16 = head(conv(route16, f[5], name="c9"), cfg, 1)
    x = layers.UpSampling2D(2, name="up")(conv(route16, f[3], 1, name="c10"))
    x = layers.Concatenate(name="merge")([x, route8])
    out8 = head(conv(x, f[4], name="c11"), cfg, 0)
    return keras.Model(inputs, [out8, out16], name="yolov3_tiny")
