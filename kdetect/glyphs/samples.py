"""Training crops for the glyph reader, labelled for free by the renderer's exact boxes.

Per captcha: one crop near every glyph's centre (jittered as the detector's boxes are), one
at every midpoint of two neighbours (where a doubled box sits) and a few anywhere. A crop is
labelled with the glyph whose centre it is near, "no glyph" when it is far from every centre,
and no class in between, where either answer would be a fair one. A reader with centre offsets
also reads one crop up to OFF_PX off every glyph, and learns from each crop near a glyph how far
that glyph's centre lies from the crop's. A reader with centring under 1 (near and far both
closer in) also reads one crop BESIDE_PX off each glyph, where it must learn "no glyph" or the
packed neighbour.
"""

from __future__ import annotations

import tensorflow as tf

from kdetect.detector.preprocess import preprocess
from kdetect.glyphs.config import GlyphConfig
from kdetect.glyphs.model import crop_columns

# Near a glyph: within this share of its width, or NEAR_PX, of its centre (a narrow 1's box
# from the detector is often 3 px off, and must still read as a 1). Far: beyond FAR of its width
# and FAR_PX from every centre, which a doubled box between two glyphs is.
NEAR, NEAR_PX = 0.15, 3.0
FAR, FAR_PX = 0.35, 7.0
RANDOM_CROPS = 3
# The offset is learnt where the nearest glyph's centre lies within OFFSET_RANGE px and
# OFFSET_MARGIN px nearer than the next one (halfway between two, either would be a fair answer).
OFFSET_RANGE, OFFSET_MARGIN = 12.0, 2.0
OFF_PX = 10.0
BESIDE_PX = (3.0, 8.0)


def label_positions(positions: tf.Tensor, centres: tf.Tensor, widths: tf.Tensor, labels: tf.Tensor,
                    none_class: int, centring: float = 1.0) -> tf.Tensor:
    """Crop centres [P], glyph centres and widths [N], glyph classes [N] -> the crops' labels [P]:
    a glyph class, none_class, or -1 for a crop too ambiguous to learn from. centring scales
    the near and far distances (GlyphConfig.centring)."""
    # A column for "no glyph at all", far from everything, so a captcha without boxes still works.
    offset = tf.abs(positions[:, None] - tf.concat([centres, [-1e9]], 0)[None, :])  # [P, N + 1] px
    near_px, far_px = near_distance(widths, centring), far_distance(widths, centring)
    near = offset <= tf.concat([near_px, [0.0]], 0)[None, :]
    far = tf.reduce_all(offset >= tf.concat([far_px, [0.0]], 0)[None, :], axis=1)
    # The nearest glyph, for crops near one (two are near only in text packed tighter than NEAR_PX).
    nearest = tf.argmin(tf.where(near, offset, 1e12), 1, output_type=tf.int32)
    glyph = tf.gather(tf.concat([labels, [none_class]], 0), nearest)
    return tf.where(tf.reduce_any(near, 1), glyph, tf.where(far, none_class, -1))


def near_distance(widths: tf.Tensor, centring: float = 1.0) -> tf.Tensor:
    """Glyph widths [N] px -> how far off its centre a crop still reads as the glyph [N] px."""
    return tf.maximum(NEAR * widths, NEAR_PX) * centring


def far_distance(widths: tf.Tensor, centring: float = 1.0) -> tf.Tensor:
    """Glyph widths [N] px -> how far off its centre a crop reads "no glyph" [N] px."""
    return tf.maximum(FAR * widths, FAR_PX) * centring


def offset_targets(positions: tf.Tensor, centres: tf.Tensor) -> tf.Tensor:
    """Crop centres [P], glyph centres [N] -> how far the nearest glyph's centre lies from each
    crop's, in px [P]; NaN where no glyph is near enough, or two are about as near."""
    signed = tf.concat([centres, [-1e9, -1e9]], 0)[None, :] - positions[:, None]  # [P, N + 2]
    nearest, second = tf.unstack(-tf.math.top_k(-tf.abs(signed), 2).values, axis=1)
    offset = tf.gather(signed, tf.argmin(tf.abs(signed), 1, output_type=tf.int32), batch_dims=1)
    learnt = (nearest <= OFFSET_RANGE) & (second - nearest >= OFFSET_MARGIN)
    return tf.where(learnt, offset, float("nan"))


def crop_samples(example: dict, seed: tf.Tensor, cfg: GlyphConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """One decoded captcha -> (crops [P, H, crop_width, 3], targets [P, 2]: class (-1: none to
    learn), offset in columns (NaN: none to learn, and always without cfg.centre_offset)), crops
    with nothing to learn left out."""
    hw = tf.cast(tf.shape(example["image"])[:2], tf.float32)
    image = preprocess(example["image"], cfg)
    sx = cfg.input_width / hw[1]
    boxes = example["boxes"]
    centres = (boxes[:, 0] + boxes[:, 2]) / 2 * sx
    widths = tf.maximum((boxes[:, 2] - boxes[:, 0]) * sx, 1.0)
    n = tf.shape(centres)[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    near = centres + tf.random.stateless_uniform([n], seeds[0], -1.0, 1.0) * near_distance(widths, cfg.centring)
    ordered = tf.sort(centres)
    mids = (ordered[1:] + ordered[:-1]) / 2 + tf.random.stateless_uniform([tf.maximum(n - 1, 0)], seeds[1], -1.0, 1.0)
    anywhere = tf.random.stateless_uniform([RANDOM_CROPS], seeds[2], 0.0, float(cfg.input_width))
    positions = [near, mids, anywhere]
    if cfg.centre_offset:
        off = tf.random.stateless_uniform([n], tf.random.experimental.stateless_fold_in(seed, 3), -OFF_PX, OFF_PX)
        positions.append(centres + off)
    if cfg.centring < 1.0:
        beside_seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, 4), 2)
        side = tf.sign(tf.random.stateless_uniform([n], beside_seeds[0], -1.0, 1.0))
        positions.append(centres + side * tf.random.stateless_uniform([n], beside_seeds[1], *BESIDE_PX))
    positions = tf.round(tf.concat(positions, 0))
    labels = label_positions(positions, centres, widths, example["labels"], len(cfg.charset), cfg.centring)
    offsets = offset_targets(positions, centres) if cfg.centre_offset else tf.fill(tf.shape(positions), float("nan"))
    keep = (labels >= 0) | tf.math.is_finite(offsets)
    targets = tf.stack([tf.cast(labels, tf.float32), offsets], 1)
    positions, targets = tf.boolean_mask(positions, keep), tf.boolean_mask(targets, keep)
    crops = crop_columns(image[None], tf.cast(positions, tf.int32)[None], cfg.crop_width)[0]
    return crops, targets


def crop_dataset(examples: tf.data.Dataset, cfg: GlyphConfig, seed: int, batch_size: int,
                 shuffle: int = 4096, whole_batches: bool = True) -> tf.data.Dataset:
    """Decoded captchas -> shuffled batches of (crops, labels) (the last one short unless whole_batches)."""
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    pairs = tf.data.Dataset.zip(examples, seeds).map(
        lambda ex, s: crop_samples(ex, tf.cast(s, tf.int64) % (2**31), cfg),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    crops = pairs.flat_map(lambda c, l: tf.data.Dataset.from_tensor_slices((c, l)))
    return crops.shuffle(shuffle, seed=seed).batch(batch_size, drop_remainder=whole_batches).prefetch(tf.data.AUTOTUNE)
