"""The YOLOv3 loss: box regression, objectness with an ignore threshold, and the class term."""

from __future__ import annotations

import tensorflow as tf

from kdetect.detector.config import ModelConfig


def cell_offsets(gh: int, gw: int) -> tf.Tensor:
    """[gh, gw, 1, 2] holding each cell's (x, y) index."""
    gx, gy = tf.meshgrid(tf.range(gw, dtype=tf.float32), tf.range(gh, dtype=tf.float32))
    return tf.stack([gx, gy], axis=-1)[:, :, None, :]


def pred_boxes(raw: tf.Tensor, cfg: ModelConfig, scale: int) -> tf.Tensor:
    """Raw head output [B, gh, gw, A, 5+C] -> boxes [B, gh, gw, A, 4] (x0, y0, x1, y1) in 0..1."""
    gh, gw = cfg.grid(scale)
    anchors = tf.constant(cfg.scale_anchors(scale), tf.float32) / [cfg.input_width, cfg.input_height]  # [A, 2]
    centre = (tf.sigmoid(raw[..., 0:2]) + cell_offsets(gh, gw)) / [gw, gh]
    wh = tf.exp(tf.clip_by_value(raw[..., 2:4], -8.0, 8.0)) * anchors
    return tf.concat([centre - wh / 2, centre + wh / 2], axis=-1)


def box_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """IoU of broadcastable box tensors [..., 4] -> [...]; empty boxes give 0."""
    inter_wh = tf.maximum(tf.minimum(a[..., 2:], b[..., 2:]) - tf.maximum(a[..., :2], b[..., :2]), 0.0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return tf.math.divide_no_nan(inter, area(a) + area(b) - inter)


def scale_loss(y_true: tf.Tensor, raw: tf.Tensor, true_boxes: tf.Tensor, cfg: ModelConfig, scale: int) -> tf.Tensor:
    """Per-example loss [B] of one scale.

    y_true [B, gh, gw, A, 6] from encode_targets; raw [B, gh, gw, A, 5+C] from the model;
    true_boxes [B, M, 4], every box of the image, for the ignore test.
    """
    gh, gw = cfg.grid(scale)
    anchors = tf.constant(cfg.scale_anchors(scale), tf.float32) / [cfg.input_width, cfg.input_height]  # [A, 2]
    obj = y_true[..., 4]  # [B, gh, gw, A]
    true_xy = (y_true[..., 0:2] + y_true[..., 2:4]) / 2  # [B, gh, gw, A, 2] centre in 0..1
    true_wh = y_true[..., 2:4] - y_true[..., 0:2]  # [B, gh, gw, A, 2]
    true_cell_xy = true_xy * [gw, gh] - cell_offsets(gh, gw)  # offset inside the cell, 0..1
    true_twh = tf.where(obj[..., None] > 0, tf.math.log(tf.maximum(true_wh, 1e-9) / anchors), 0.0)
    # Small boxes weigh more, as in YOLOv3: an error of a pixel matters more to them.
    box_weight = obj * (2.0 - true_wh[..., 0] * true_wh[..., 1])  # [B, gh, gw, A]

    xy_loss = box_weight * tf.reduce_sum(tf.square(true_cell_xy - tf.sigmoid(raw[..., 0:2])), -1)
    wh_loss = box_weight * tf.reduce_sum(tf.square(true_twh - raw[..., 2:4]), -1)

    # A prediction that is not responsible for a glyph but already overlaps one well is neither
    # rewarded nor punished for its objectness.
    ious = box_iou(pred_boxes(raw, cfg, scale)[..., None, :], true_boxes[:, None, None, None, :, :])  # [B, gh, gw, A, M]
    ignore = tf.cast(tf.reduce_max(ious, axis=-1) < cfg.ignore_iou, tf.float32)
    obj_ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=obj, logits=raw[..., 4])
    obj_loss = obj * obj_ce + (1.0 - obj) * ignore * obj_ce

    classes = tf.one_hot(tf.cast(y_true[..., 5], tf.int32), cfg.num_classes)  # [B, gh, gw, A, C]
    class_ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=classes, logits=raw[..., 5:])
    class_loss = obj * tf.reduce_sum(class_ce, -1)

    return tf.reduce_sum(xy_loss + wh_loss + obj_loss + class_loss, axis=[1, 2, 3])


def yolo_loss(targets: dict[str, tf.Tensor], outputs: list[tf.Tensor], cfg: ModelConfig) -> tf.Tensor:
    """Per-example total loss [B] over both scales."""
    return tf.add_n([scale_loss(targets[f"stride{stride}"], outputs[s], targets["boxes"], cfg, s)
                     for s, stride in enumerate(cfg.strides)])
