"""The research centre head (research/centres.py): its targets, its loss and its decoding."""

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from kdetect.detector.config import ModelConfig

# research/ lies outside the installed package, beside it in the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from research.centres import (COLUMN_STRIDE, STRIDE, centre_head, centre_loss, centre_targets,  # noqa: E402
                              column_reader, read_cells)

CFG = ModelConfig(alphabets=())
NONE = CFG.num_classes


def test_each_cell_learns_the_glyph_whose_centre_it_holds():
    # Two 1s packed 6 px apart and a 9 beside them.
    targets = centre_targets(tf.constant([21.0, 27.0, 37.0]), tf.constant([1, 1, 9]), 12, NONE).numpy()
    classes, offsets = targets[:, 0], targets[:, 1]
    # 21 lies in cell 5 (20..24, middle 22), 27 in cell 6 (middle 26), 37 in cell 9 (middle 38).
    assert classes[[5, 6, 9]].tolist() == [1, 1, 9]
    np.testing.assert_allclose(offsets[[5, 6, 9]], [-1.0, 1.0, -1.0])
    # The middles of cells 4, 7 and 8 (18, 30, 34) lie 3 px from a centre, and cell 10's (42)
    # 5 px: far enough to be "no glyph".
    assert classes[[0, 4, 7, 8, 10, 11]].tolist() == [NONE] * 6
    assert np.isnan(offsets[[0, 4, 7, 8, 10, 11]]).all()


def test_a_centre_near_a_cell_border_leaves_the_neighbour_unlabelled():
    targets = centre_targets(tf.constant([23.5]), tf.constant([4]), 12, NONE).numpy()
    # 23.5 lies in cell 5 (middle 22); cell 6's middle (26) is 2.5 px away: either cell would be fair.
    assert targets[5, 0] == 4 and targets[6, 0] == -1 and targets[4, 0] == NONE
    empty = centre_targets(tf.zeros([0]), tf.zeros([0], tf.int32), 12, NONE).numpy()
    assert (empty[:, 0] == NONE).all() and np.isnan(empty[:, 1]).all()


def cell_outputs(cells: dict[int, tuple[str, float]], count: int = 40) -> np.ndarray:
    """Outputs [count, C + 2]: cell k reads char at logit 8 with offset, the rest "no glyph"."""
    out = np.zeros((count, NONE + 2), np.float32)
    out[:, NONE] = 8.0
    for k, (char, offset) in cells.items():
        out[k, NONE] = 0.0
        out[k, CFG.charset.index(char)] = 8.0
        out[k, -1] = offset
    return out


def test_packed_glyphs_in_neighbouring_cells_stay_two_and_one_glyph_in_two_cells_is_one():
    # Cells 10 and 11 point 6 px apart (two packed 1s); cells 20 and 21 point at one centre (84).
    out = cell_outputs({10: ("1", 0.0), 11: ("1", 2.0), 20: ("4", 0.0), 21: ("4", -4.0), 30: ("7", 1.0)})
    assert read_cells(out, CFG) == "1147"
    assert read_cells(out, CFG, distance=7.0) == "147"
    assert read_cells(cell_outputs({}), CFG) == ""


def test_the_centre_loss_of_a_known_prediction():
    targets = np.array([[[2, 1.0], [-1, np.nan], [NONE, np.nan]]], np.float32)
    outputs = np.zeros((1, 3, NONE + 2), np.float32)
    got = np.asarray(centre_loss(NONE + 1, 0.5)(tf.constant(targets), tf.constant(outputs)))
    # Even logits: log(C + 1) where a cell has a class; offset error 1 -> Huber 0.5, weighed 0.5.
    np.testing.assert_allclose(got, [np.log(NONE + 1) + 0.25, 0.0, np.log(NONE + 1)], rtol=1e-6)


def test_the_head_reads_every_cell_of_a_frozen_detector():
    from kdetect.detector.model import build_detector

    cfg = ModelConfig(width_multiplier=0.125)
    detector = build_detector(cfg)
    head = centre_head(detector, cfg)
    out = head(np.zeros((2, cfg.input_height, cfg.input_width, 3), np.float32))
    assert out.shape == (2, cfg.input_width // STRIDE, cfg.num_classes + 2)
    assert not detector.trainable and all(not w.trainable for w in head.get_layer("detector_features").weights)


def test_the_column_reader_reads_every_second_column_with_its_own_features():
    reader = column_reader(CFG)
    out = reader(np.zeros((1, CFG.input_height, CFG.input_width, 3), np.float32))
    assert out.shape == (1, CFG.input_width // COLUMN_STRIDE, NONE + 2)
    # At stride 2 the cells either side of a glyph's own lie within 3 px of its centre: unlabelled.
    targets = centre_targets(tf.constant([21.0]), tf.constant([5]), 80, NONE, COLUMN_STRIDE).numpy()
    assert targets[10, 0] == 5 and targets[9, 0] == targets[11, 0] == -1
    assert targets[8, 0] == targets[12, 0] == NONE and targets[10, 1] == 0.0
    # Its outputs decode at its own stride: cell 10 of 80 is centred on column 21.
    out = cell_outputs({10: ("5", 0.0), 13: ("2", 0.0)}, count=80)
    assert read_cells(out, CFG) == "52" and read_cells(out, CFG, distance=7.0) == "5"
