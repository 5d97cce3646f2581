"""Training targets: each glyph box goes to the anchor whose shape fits it best, in the cell
holding its centre (YOLOv3's assignment). TensorFlow ops, so it runs inside tf.data."""

from __future__ import annotations

import tensorflow as tf

from kdetect.detector.config import ModelConfig


def encode_targets(boxes: tf.Tensor, labels: tf.Tensor, cfg: ModelConfig) -> dict[str, tf.Tensor]:
    """boxes float32 [N, 4] (x0, y0, x1, y1) in input pixels, labels int32 [N] ->
    {"stride8": [H/8, W/8, A, 6], "stride16": [H/16, W/16, A, 6], "boxes": [max_boxes, 4]}.
    The 6 values of a responsible anchor are the box normalised to 0..1, objectness 1, class id;
    all other anchors are zeros. "boxes" lists every box (normalised, zero-padded) for the
    loss's ignore test."""
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    wh = boxes[:, 2:] - boxes[:, :2]  # [N, 2]
    keep = tf.logical_and(wh[:, 0] > 0, wh[:, 1] > 0)
    boxes, labels, wh = boxes[keep], labels[keep], wh[keep]

    anchors = tf.constant(cfg.anchors, tf.float32)  # [S*A, 2]
    inter = tf.reduce_prod(tf.minimum(wh[:, None, :], anchors[None]), axis=-1)  # [N, S*A]
    iou = inter / (tf.reduce_prod(wh, -1)[:, None] + tf.reduce_prod(anchors, -1)[None] - inter)
    best = tf.argmax(iou, axis=-1, output_type=tf.int32)  # [N]

    size = tf.constant([cfg.input_width, cfg.input_height] * 2, tf.float32)
    norm = boxes / size  # [N, 4]
    values = tf.concat([norm, tf.ones_like(norm[:, :1]), tf.cast(labels[:, None], tf.float32)], axis=-1)  # [N, 6]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # [N, 2] (x, y) in pixels

    out = {}
    for s, stride in enumerate(cfg.strides):
        gh, gw = cfg.grid(s)
        mine = tf.equal(best // cfg.anchors_per_scale, s)
        gx = tf.clip_by_value(tf.cast(centre[:, 0] // stride, tf.int32), 0, gw - 1)
        gy = tf.clip_by_value(tf.cast(centre[:, 1] // stride, tf.int32), 0, gh - 1)
        index = tf.stack([gy, gx, best % cfg.anchors_per_scale], axis=-1)  # [N, 3]
        out[f"stride{stride}"] = tf.tensor_scatter_nd_update(
            tf.zeros([gh, gw, cfg.anchors_per_scale, 6]), index[mine], values[mine])
    padded = tf.pad(norm[:cfg.max_boxes], [[0, cfg.max_boxes - tf.minimum(tf.shape(norm)[0], cfg.max_boxes)], [0, 0]])
    out["boxes"] = tf.ensure_shape(padded, [cfg.max_boxes, 4])
    return out
