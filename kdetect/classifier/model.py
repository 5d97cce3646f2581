"""The classifier: a CNN backbone, then one softmax over the charset per answer position.

Built-in Keras layers only, so a saved classifier loads with keras.saving.load_model without
custom objects and exports to SavedModel / TF.js as it is. It takes preprocessed images (0..1,
see kdetect/preprocess.py); each backbone's own input scaling is a layer inside the model.
"""

from __future__ import annotations

import keras
from keras import layers

from kdetect.classifier.config import ClassifierConfig
from kdetect.nn import scaled

# (filters, convolutions) per block of the small backbone; each block ends in a 2x2 max-pool, so
# a 64x160 input leaves a 4x10 map: ten columns keep where along the text each feature was.
SMALL_BLOCKS = ((32, 1), (64, 1), (128, 2), (192, 2))

# ImageNet channel statistics of torch-style preprocessing, which DenseNet's weights expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def small_backbone(x, width_multiplier: float = 1.0):
    for b, (base, convs) in enumerate(SMALL_BLOCKS):
        filters = scaled(base, width_multiplier, least=8)
        for c in range(convs):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"b{b + 1}_conv{c + 1}")(x)
            x = layers.BatchNormalization(name=f"b{b + 1}_bn{c + 1}")(x)
            x = layers.ReLU(name=f"b{b + 1}_relu{c + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"b{b + 1}_pool")(x)
    return x


def application_backbone(x, cfg: ClassifierConfig):
    """densenet121 or mobilenetv2 from keras.applications, without its ImageNet top."""
    shape = (cfg.input_height, cfg.input_width, 3)
    if cfg.backbone == "mobilenetv2":
        x = layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(x)  # MobileNetV2 expects -1..1
        net = keras.applications.MobileNetV2(include_top=False, weights=cfg.weights, input_shape=shape)
    else:
        x = layers.Normalization(mean=IMAGENET_MEAN, variance=[s * s for s in IMAGENET_STD], name="imagenet_norm")(x)
        net = keras.applications.DenseNet121(include_top=False, weights=cfg.weights, input_shape=shape)
    return net(x)


def build_classifier(cfg: ClassifierConfig) -> keras.Model:
    """Preprocessed images [B, H, W, 3] in 0..1 -> probabilities [B, length, classes]."""
    inputs = keras.Input((cfg.input_height, cfg.input_width, 3), name="image")
    x = small_backbone(inputs, cfg.width_multiplier) if cfg.backbone == "small" else application_backbone(inputs, cfg)
    # Average over height only: which column a feature came from tells the positions apart,
    # which global pooling would throw away.
    x = layers.AveragePooling2D((x.shape[1], 1), name="pool_height")(x)
    x = layers.Flatten(name="columns")(x)
    if cfg.backbone == "small":
        x = layers.Dense(scaled(256, cfg.width_multiplier, least=64), activation="relu", name="hidden")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    x = layers.Dense(cfg.length * cfg.num_classes, name="logits")(x)
    x = layers.Reshape((cfg.length, cfg.num_classes), name="positions")(x)
    outputs = layers.Softmax(axis=-1, name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"classifier_{cfg.backbone}_l{cfg.length}")
