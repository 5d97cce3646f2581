"""The detector's parts: shapes, gradients, loss on padded batches, targets, decoding, anchors."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from kdetect.detector.anchors import kmeans_anchors, mean_best_iou
from kdetect.detector.config import ModelConfig
from kdetect.detector.decode import decode, decode_batch, nms
from kdetect.detector.loss import yolo_loss
from kdetect.detector.model import build_detector
from kdetect.detector.targets import encode_targets
from kdetect.errors import ConfigError

CFG = ModelConfig(width_multiplier=0.125)


def targets_batch(box_lists, label_lists, cfg=CFG):
    encoded = [encode_targets(tf.constant(b, tf.float32), tf.constant(l, tf.int32), cfg)
               for b, l in zip(box_lists, label_lists)]
    return {k: tf.stack([e[k] for e in encoded]) for k in encoded[0]}


def perfect_outputs(targets: dict, cfg: ModelConfig) -> list[np.ndarray]:
    """Raw head values that a perfect network would give for these targets (one image)."""
    outputs = []
    for s, stride in enumerate(cfg.strides):
        t = targets[f"stride{stride}"].numpy()
        gh, gw = cfg.grid(s)
        raw = np.full((gh, gw, cfg.anchors_per_scale, 5 + cfg.num_classes), -12.0, np.float32)
        for gy, gx, a in zip(*np.nonzero(t[..., 4])):
            x0, y0, x1, y1 = t[gy, gx, a, :4]
            off = np.array([(x0 + x1) / 2 * gw - gx, (y0 + y1) / 2 * gh - gy])
            raw[gy, gx, a, 0:2] = np.log(off / (1 - off))
            aw, ah = cfg.scale_anchors(s)[a]
            raw[gy, gx, a, 2:4] = np.log([(x1 - x0) * cfg.input_width / aw, (y1 - y0) * cfg.input_height / ah])
            raw[gy, gx, a, 4] = 12.0
            raw[gy, gx, a, 5 + int(t[gy, gx, a, 5])] = 12.0
        outputs.append(raw)
    return outputs


def test_output_shapes_per_scale():
    model = build_detector(ModelConfig(width_multiplier=0.25))
    out8, out16 = model(np.zeros((2, 64, 160, 3), np.float32))
    assert out8.shape == (2, 8, 20, 3, 41)
    assert out16.shape == (2, 4, 10, 3, 41)


def test_every_weight_gets_a_gradient():
    model = build_detector(CFG)
    images = np.random.default_rng(0).random((2, 64, 160, 3), np.float32)
    y = targets_batch([[[10, 8, 30, 50], [40, 12, 70, 60]], [[100, 5, 118, 40]]], [[3, 17], [35]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(yolo_loss(y, model(images, training=True), CFG))
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None or not np.any(g.numpy())]
    assert not missing


def test_padded_and_empty_box_batches_give_finite_loss():
    model = build_detector(CFG)
    images = np.zeros((3, 64, 160, 3), np.float32)
    many = [[i * 9, 5, i * 9 + 20, 50] for i in range(CFG.max_boxes + 4)]  # more than max_boxes
    y = targets_batch([[], [[20, 10, 40, 50]], many], [[], [1], list(range(len(many)))])
    loss = yolo_loss(y, model(images, training=True), CFG).numpy()
    assert loss.shape == (3,) and np.all(np.isfinite(loss)) and np.all(loss > 0)


def test_targets_encode_and_decode_back_to_their_boxes():
    boxes = np.array([[70, 6, 92, 50], [4, 10, 27, 44], [40, 12, 60, 58], [108, 2, 150, 60]], np.float32)
    labels = [10, 3, 35, 0]  # a, 3, z, 0
    targets = encode_targets(tf.constant(boxes), tf.constant(labels), CFG)
    assert sum(int(targets[f"stride{s}"][..., 4].numpy().sum()) for s in CFG.strides) == 4
    reading = decode(perfect_outputs(targets, CFG), CFG)
    assert reading.text == "3za0"  # sorted by centre x
    order = np.argsort((boxes[:, 0] + boxes[:, 2]) / 2)
    np.testing.assert_allclose([g.box for g in reading.glyphs], boxes[order], atol=1e-3)
    assert reading.confidence > 0.99


def test_golden_decode_of_a_hand_built_prediction():
    cfg = dataclasses.replace(CFG, anchors=((20, 40),) * 6)
    raw8 = np.full((8, 20, 3, 41), -10.0, np.float32)
    raw16 = np.full((4, 10, 3, 41), -10.0, np.float32)
    raw8[4, 15, 0, :5] = [0, 0, 0, 0, 6]  # centre (124, 36): 'k', strong
    raw8[4, 15, 0, 5 + 20] = 6
    raw8[4, 15, 1, :5] = [0.1, 0, 0, 0, 3]  # the same place again, weaker, another class: NMS drops it
    raw8[4, 15, 1, 5 + 1] = 3
    raw16[1, 2, 2, :5] = [0, 0, 0, 0, 5]  # centre (40, 24): '7'
    raw16[1, 2, 2, 5 + 7] = 5
    raw8[2, 10, 0, :5] = [0, 0, 0, 0, -3]  # centre (84, 20), score below the threshold
    raw8[2, 10, 0, 5 + 2] = 9
    reading = decode([raw8, raw16], cfg, image_size=(320, 128))
    assert reading.text == "7k"
    assert [round(v) for v in reading.glyphs[1].box] == [228, 32, 268, 112]  # (124 +- 10, 36 +- 20) x 2
    assert reading.confidence == pytest.approx(reading.glyphs[0].score * reading.glyphs[1].score)


def test_a_batch_decodes_as_its_images_do_one_by_one():
    rng = np.random.default_rng(3)
    outputs = [rng.normal(-2, 3, (5, gh, gw, 3, 5 + CFG.num_classes)).astype(np.float32)
               for gh, gw in (CFG.grid(0), CFG.grid(1))]
    sizes = [(160 + 10 * i, 64) for i in range(5)]
    batched = decode_batch(outputs, CFG, sizes, symbols="0123456789")
    singles = [decode([o[i] for o in outputs], CFG, sizes[i], symbols="0123456789") for i in range(5)]
    assert batched == singles
    assert all(r.text for r in batched) and all(set(r.text) <= set("0123456789") for r in batched)


def test_nms_keeps_neighbours_that_barely_overlap():
    boxes = np.array([[0, 0, 20, 40], [14, 0, 34, 40], [1, 0, 21, 40]], np.float32)
    assert sorted(nms(boxes, np.array([0.9, 0.8, 0.7]), 0.45)) == [0, 1]


def test_kmeans_finds_the_clusters_and_sorts_by_area():
    rng = np.random.default_rng(1)
    centres = np.array([[12, 30], [20, 44], [30, 52]], float)
    wh = np.concatenate([c + rng.normal(0, 0.5, (200, 2)) for c in centres])
    anchors = kmeans_anchors(wh, 3, seed=0)
    np.testing.assert_allclose(anchors, centres, atol=1.0)
    assert mean_best_iou(wh, anchors) > 0.95
    np.testing.assert_array_equal(anchors, kmeans_anchors(wh, 3, seed=0))


def test_symbols_restrict_what_can_be_read():
    cfg = dataclasses.replace(CFG, anchors=((20, 40),) * 6)
    raw8 = np.full((8, 20, 3, 41), -10.0, np.float32)
    raw16 = np.full((4, 10, 3, 41), -10.0, np.float32)
    raw8[4, 5, 0, 4] = 6
    raw8[4, 5, 0, 5 + 21] = 4  # 'l' is the model's first guess ...
    raw8[4, 5, 0, 5 + 1] = 2  # ... '1' its second
    assert decode([raw8, raw16], cfg).text == "l"
    assert decode([raw8, raw16], cfg, symbols="0123456789").text == "1"


TRAIN_MIX = ("0123456789", "0123456789", "23456789abcdegikpqsvxyz", "0123456789abcdefghijklmnopqrstuvwxyz")


def glyph_row(chars: list[tuple[str, float, float] | str], cfg: ModelConfig) -> list[np.ndarray]:
    """Raw outputs with one confident glyph per stride-8 cell along row 4, left to right. A plain
    char is a clear glyph; (a, la, lb) is one whose class logits are la for a and lb for '1'."""
    raw8 = np.full((8, 20, 3, 41), -10.0, np.float32)
    raw16 = np.full((4, 10, 3, 41), -10.0, np.float32)
    for k, c in enumerate(chars):
        cell = raw8[4, 2 + 3 * k, 0]
        cell[4] = 6
        if isinstance(c, str):
            cell[5 + cfg.charset.index(c)] = 6
        else:
            cell[5 + cfg.charset.index(c[0])], cell[5 + cfg.charset.index("1")] = c[1], c[2]
    return [raw8, raw16]


def test_the_guessed_alphabet_reads_a_doubtful_glyph_the_way_its_neighbours_point():
    cfg = dataclasses.replace(CFG, anchors=((20, 40),) * 6, alphabets=TRAIN_MIX)
    doubtful = ("l", 3.0, 2.0)  # a little more 'l' than '1'
    digits = glyph_row(["3", "5", doubtful, "8", "0"], cfg)
    assert decode(digits, cfg).text == "35180"
    assert decode(digits, cfg, guess_alphabet=False).text == "35l80"
    # Beside letters only the full alphabet fits, and there 'l' stays the better read.
    letters = glyph_row(["h", "w", doubtful, "3", "0"], cfg)
    assert decode(letters, cfg).text == "hwl30"
    # Given symbols override the guess; a model without alphabets reads as before.
    assert decode(digits, cfg, symbols="0123456789abcdefghijklmnopqrstuvwxyz").text == "35l80"
    assert decode(digits, dataclasses.replace(cfg, alphabets=())).text == "35l80"
    # A batch guesses each image's alphabet on its own.
    batch = [np.stack([a, b]) for a, b in zip(digits, letters)]
    assert [r.text for r in decode_batch(batch, cfg)] == ["35180", "hwl30"]


def test_a_config_refuses_an_alphabet_outside_its_charset():
    with pytest.raises(ConfigError, match="alphabet 'ABC'"):
        ModelConfig.from_dict({"alphabets": ["0123456789", "ABC"]})
    assert ModelConfig.from_dict({"alphabets": ["0123", "0123"]}).alphabets == ("0123", "0123")


def test_a_known_length_drops_a_doubled_glyph_and_takes_back_a_faint_one():
    cfg = dataclasses.replace(CFG, anchors=((20, 40),) * 6)
    raw8, raw16 = glyph_row(["3", "5", "8"], cfg)
    faint = raw8[4, 11, 0]  # a fourth glyph whose objectness (sigmoid(-2.5) ~ 0.08) misses the threshold
    faint[4], faint[5 + 7] = -2.5, 6
    assert decode([raw8, raw16], cfg).text == "358"
    assert decode([raw8, raw16], cfg, length=4).text == "3587"
    # A doubled glyph (a weaker box a cell beside the 5) goes when three glyphs are asked for.
    raw8[4, 6, 0, 4], raw8[4, 6, 0, 5 + 5] = 1.0, 6
    assert decode([raw8, raw16], cfg).text == "3558"
    assert decode([raw8, raw16], cfg, length=3).text == "358"
    with pytest.raises(ConfigError, match="answer_length"):
        dataclasses.replace(cfg, answer_length=0).validate()


def test_tune_thresholds_finds_the_thresholds_that_read_the_held_out_answers():
    from kdetect.training.detector import tune_thresholds

    cfg = dataclasses.replace(CFG, anchors=((20, 40),) * 6, score_threshold=0.25, nms_iou=0.35)

    def image(faint_score_logit: float, doubled: bool) -> list[np.ndarray]:
        """'7' and 'k' read clearly; a faint '3' between them; maybe a second box on the 'k'."""
        raw8 = np.full((8, 20, 3, 41), -10.0, np.float32)
        raw16 = np.full((4, 10, 3, 41), -10.0, np.float32)
        raw16[1, 2, 2, :5] = [0, 0, 0, 0, 6]  # centre (40, 24): '7'
        raw16[1, 2, 2, 5 + 7] = 6
        raw8[4, 9, 0, :5] = [0, 0, 0, 0, faint_score_logit]  # centre (76, 36): '3', faint
        raw8[4, 9, 0, 5 + 3] = 9
        raw8[4, 15, 0, :5] = [0, 0, 0, 0, 6]  # centre (124, 36): 'k'
        raw8[4, 15, 0, 5 + 20] = 6
        if doubled:  # the same 'k' again 3 px to the right, weaker: NMS must drop it
            raw8[4, 15, 1, :5] = [2.0, 0, 0, 0, 1.0]
            raw8[4, 15, 1, 5 + 20] = 6
        return [raw8, raw16]

    # Score 0.25 loses the faint 3 (sigmoid(-1.5) = 0.18); NMS at 0.35 already drops the doubled k.
    batch = [image(-1.5, d) for d in (False, True, False, True)]
    outputs = [np.stack([b[s] for b in batch]) for s in range(2)]

    class Recorded:
        def predict(self, images, batch_size, verbose):
            assert len(images) == len(batch)
            return outputs

    texts = ["73k"] * 4
    assert [r.text for r in decode_batch(outputs, cfg)] == ["7k"] * 4
    tuned = tune_thresholds(Recorded(), np.zeros((4, 64, 160, 3), np.uint8), texts, cfg)
    assert [r.text for r in decode_batch(outputs, tuned)] == texts
    assert tuned.score_threshold <= 0.15
    # Where the thresholds already read everything right, they are kept (ties go to the current).
    assert tune_thresholds(Recorded(), np.zeros((4, 64, 160, 3), np.uint8), texts, tuned) == tuned
