"""The YOLO loss term by term: golden values on hand-built predictions, each term's sign, and
the loss falling as a prediction moves toward its target."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kdetect.detector.config import ModelConfig
from kdetect.detector.loss import yolo_loss
from test_yolo import perfect_outputs, targets_batch

CFG = ModelConfig(width_multiplier=0.125)
# One glyph, 40 x 52 px of the 160 x 64 input, centred at (70, 30) (targets take input pixels).
BOX = [[50.0, 4.0, 90.0, 56.0]]


def setup():
    targets = targets_batch([BOX], [[3]])
    perfect = perfect_outputs({k: v[0] for k, v in targets.items()}, CFG)
    scale, gy, gx, a = next((s, *np.argwhere(targets[f"stride{stride}"][0, ..., 4].numpy() > 0)[0])
                            for s, stride in enumerate(CFG.strides)
                            if targets[f"stride{stride}"][0, ..., 4].numpy().any())
    return targets, perfect, (scale, gy, gx, a)


def loss_of(targets, outputs) -> float:
    return float(yolo_loss(targets, [tf.constant(o[None]) for o in outputs], CFG)[0])


def moved(outputs, where, channel, value):
    scale, gy, gx, a = where
    out = [o.copy() for o in outputs]
    out[scale][gy, gx, a, channel] = value
    return out


def test_a_perfect_prediction_costs_almost_nothing():
    targets, perfect, _ = setup()
    assert 0.0 <= loss_of(targets, perfect) < 1e-2


def test_golden_cost_of_each_term():
    targets, perfect, where = setup()
    base = loss_of(targets, perfect)
    scale, gy, gx, a = where
    area = (BOX[0][2] - BOX[0][0]) / CFG.input_width * (BOX[0][3] - BOX[0][1]) / CFG.input_height
    weight = 2.0 - area  # small boxes weigh more
    # Objectness of the responsible anchor at logit 0 instead of 12: -log(0.5) more.
    assert loss_of(targets, moved(perfect, where, 4, 0.0)) - base == pytest.approx(math.log(2), abs=1e-3)
    # Its true class at logit 0: the class term's -log(0.5).
    assert loss_of(targets, moved(perfect, where, 5 + 3, 0.0)) - base == pytest.approx(math.log(2), abs=1e-3)
    # A wrong class at logit 0 too: -log(1 - 0.5).
    assert loss_of(targets, moved(perfect, where, 5 + 7, 0.0)) - base == pytest.approx(math.log(2), abs=1e-3)
    # The width's log-scale off by 0.5: weight x 0.5^2.
    tw = perfect[scale][gy, gx, a, 2]
    assert loss_of(targets, moved(perfect, where, 2, tw + 0.5)) - base == pytest.approx(weight * 0.25, rel=1e-3)
    # The centre's x offset from sigmoid 0.5 to sigmoid(0): (offset - 0.5)^2 x weight.
    tx = perfect[scale][gy, gx, a, 0]
    offset = 1 / (1 + math.exp(-tx))
    assert loss_of(targets, moved(perfect, where, 0, 0.0)) - base == pytest.approx(weight * (offset - 0.5) ** 2, rel=1e-3)
    # A background anchor far from the glyph claiming one at logit 0: -log(1 - 0.5).
    background = (0, 0, 0, 0) if where[:3] != (0, 0, 0) else (0, 0, 1, 0)
    assert loss_of(targets, moved(perfect, background, 4, 0.0)) - base == pytest.approx(math.log(2), abs=1e-3)


@pytest.mark.parametrize("channel", [0, 1, 2, 3, 4, 5 + 3])
def test_each_term_falls_as_the_prediction_moves_toward_its_target(channel):
    targets, perfect, where = setup()
    scale, gy, gx, a = where
    target = perfect[scale][gy, gx, a, channel]
    start = target + (-4.0 if channel in (4, 5 + 3) else 1.5)
    losses = [loss_of(targets, moved(perfect, where, channel, start + t * (target - start)))
              for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_a_background_anchor_overlapping_the_glyph_well_is_ignored():
    targets, perfect, where = setup()
    scale, gy, gx, a = where
    # Another anchor of the same cell predicting the glyph's own box: overlap over ignore_iou,
    # so its objectness is neither rewarded nor punished.
    other = (a + 1) % CFG.anchors_per_scale
    out = [o.copy() for o in perfect]
    out[scale][gy, gx, other, :4] = perfect[scale][gy, gx, a, :4]
    aw, ah = CFG.scale_anchors(scale)[a]
    ow, oh = CFG.scale_anchors(scale)[other]
    out[scale][gy, gx, other, 2:4] += np.log([aw / ow, ah / oh])  # the same box from another anchor size
    quiet = loss_of(targets, out)
    out[scale][gy, gx, other, 4] = 0.0
    assert loss_of(targets, out) == pytest.approx(quiet, abs=1e-4)
