"""Training crops for the glyph reader, labelled for free by the renderer's exact boxes.

Per captcha: one crop near every glyph's centre (jittered as the detector's boxes are), one
at every midpoint of two neighbours (where a doubled box sits) and a few anywhere. A crop is
labelled with the glyph whose centre it is near, "no glyph" when it is far from every centre,
and no class in between, where either answer would be a fair one.
"""

from __future__ import annotations

import tensorflow as tf

from kdetect.glyphs.config import GlyphConfig
from kdetect.glyphs.model import crop_columns
from kdetect.preprocess import preprocess

# Near a glyph: within this share of its width, or NEAR_PX, of its centre (a narrow 1's box
# from the detector is often 3 px off, and must still read as a 1). Far: beyond FAR of its width
# and FAR_PX from every centre, which a doubled box between two glyphs is.
NEAR, NEAR_PX = 0.15, 3.0
FAR, FAR_PX = 0.35, 7.0
RANDOM_CROPS = 3


def label_positions(positions: tf.Tensor, centres: tf.Tensor, widths: tf.Tensor, labels: tf.Tensor,
                    none_class: int) -> tf.Tensor:
    """Crop centres [P], glyph centres and widths [N], glyph classes [N] -> the crops' labels [P]:
    a glyph class, none_class, or -1 for a crop too ambiguous to learn from."""
    # A column for "no glyph at all", far from everything, so a captcha without boxes still works.
    offset = tf.abs(positions[:, None] - tf.concat([centres, [-1e9]], 0)[None, :])  # [P, N + 1] px
    near_px, far_px = near_distance(widths), far_distance(widths)
    near = offset <= tf.concat([near_px, [0.0]], 0)[None, :]
    far = tf.reduce_all(offset >= tf.concat([far_px, [0.0]], 0)[None, :], axis=1)
    # The nearest glyph, for crops near one (two are near only in text packed tighter than NEAR_PX).
    nearest = tf.argmin(tf.where(near, offset, 1e12), 1, output_type=tf.int32)
    glyph = tf.gather(tf.concat([labels, [none_class]], 0), nearest)
    return tf.where(tf.reduce_any(near, 1), glyph, tf.where(far, none_class, -1))


def near_distance(widths: tf.Tensor) -> tf.Tensor:
    """Glyph widths [N] px -> how far off its centre a crop still reads as the glyph [N] px."""
    return tf.maximum(NEAR * widths, NEAR_PX)


def far_distance(widths: tf.Tensor) -> tf.Tensor:
    """Glyph widths [N] px -> how far off its centre a crop reads "no glyph" [N] px."""
    return tf.maximum(FAR * widths, FAR_PX)


def crop_samples(example: dict, seed: tf.Tensor, cfg: GlyphConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """One decoded captcha -> (crops [P, H, crop_width, 3], their classes [P]), the crops with
    no class to learn left out."""
    hw = tf.cast(tf.shape(example["image"])[:2], tf.float32)
    image = preprocess(example["image"], cfg)
    sx = cfg.input_width / hw[1]
    boxes = example["boxes"]
    centres = (boxes[:, 0] + boxes[:, 2]) / 2 * sx
    widths = tf.maximum((boxes[:, 2] - boxes[:, 0]) * sx, 1.0)
    n = tf.shape(centres)[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    near = centres + tf.random.stateless_uniform([n], seeds[0], -1.0, 1.0) * near_distance(widths)
    ordered = tf.sort(centres)
    mids = (ordered[1:] + ordered[:-1]) / 2 + tf.random.stateless_uniform([tf.maximum(n - 1, 0)], seeds[1], -1.0, 1.0)
    anywhere = tf.random.stateless_uniform([RANDOM_CROPS], seeds[2], 0.0, float(cfg.input_width))
    positions = tf.round(tf.concat([near, mids, anywhere], 0))
    labels = label_positions(positions, centres, widths, example["labels"], len(cfg.charset))
    keep = labels >= 0
    positions, labels = tf.boolean_mask(positions, keep), tf.boolean_mask(labels, keep)
    crops = crop_columns(image[None], tf.cast(positions, tf.int32)[None], cfg.crop_width)[0]
    return crops, labels


def crop_dataset(examples: tf.data.Dataset, cfg: GlyphConfig, seed: int, batch_size: int,
                 shuffle: int = 4096, whole_batches: bool = True) -> tf.data.Dataset:
    """Decoded captchas -> shuffled batches of (crops, labels) (the last one short unless whole_batches)."""
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    pairs = tf.data.Dataset.zip(examples, seeds).map(
        lambda ex, s: crop_samples(ex, tf.cast(s, tf.int64) % (2**31), cfg),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    crops = pairs.flat_map(lambda c, l: tf.data.Dataset.from_tensor_slices((c, l)))
    return crops.shuffle(shuffle, seed=seed).batch(batch_size, drop_remainder=whole_batches).prefetch(tf.data.AUTOTUNE)
