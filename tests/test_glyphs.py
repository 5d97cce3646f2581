"""The second stage: crops, their labels, decoding with the glyph reader, and its package."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kdetect.glyphs.config import GlyphConfig
from kdetect.glyphs.decode import crop_centres, look_twice, refine
from kdetect.glyphs.loss import glyph_loss
from kdetect.glyphs.model import build_glyph_reader, crop_columns
from kdetect.glyphs.samples import crop_samples, label_positions
from kdetect.readings import Glyph, Reading

CHARSET = GlyphConfig().charset
NONE = len(CHARSET)


def test_crops_are_the_columns_around_each_centre_with_edges_repeated():
    image = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8, 1)  # column x holds x (+ 8 * row ...)
    crops = np.asarray(crop_columns(image, np.array([[0, 4], [7, 3]], np.int32), 4))
    assert crops.shape == (2, 2, 3, 4, 1)
    # Centre 0, width 4: columns -2..1, the left edge repeated.
    np.testing.assert_array_equal(crops[0, 0, 0, :, 0], [0, 0, 0, 1])
    np.testing.assert_array_equal(crops[0, 1, 2, :, 0], image[0, 2, 2:6, 0])
    # The second image's crops come from the second image, the right edge repeated.
    np.testing.assert_array_equal(crops[1, 0, 1, :, 0], image[1, 1, [5, 6, 7, 7], 0])
    np.testing.assert_array_equal(crops[1, 1, 0, :, 0], image[1, 0, 1:5, 0])


def test_crop_labels_near_a_centre_far_from_all_and_ambiguous_between():
    centres, widths = tf.constant([20.0, 40.0]), tf.constant([10.0, 20.0])
    positions = tf.constant([21.0, 23.0, 30.0, 37.0, 80.0, 44.0])
    labels = label_positions(positions, centres, widths, tf.constant([7, 3]), NONE).numpy()
    # 21 and 23: within 3 px of glyph 7 (narrow glyphs get 3 px however thin); 30: 10 px from
    # both: none; 37: 3 px from glyph 3; 80: far from all; 44: 4 px from glyph 3, ambiguous.
    assert labels.tolist() == [7, 7, NONE, 3, NONE, -1]
    # A captcha whose glyphs all left the image: every crop is "no glyph".
    empty = label_positions(positions, tf.zeros([0]), tf.ones([0]), tf.zeros([0], tf.int32), NONE).numpy()
    assert empty.tolist() == [NONE] * 6


def one_hot_probs(chars: str, rejected: set[int] = frozenset(), confusion: dict[int, str] | None = None) -> np.ndarray:
    """Probabilities [K, C + 1]: glyph k is chars[k] at 0.9, or "no glyph" at 0.9 if k is rejected;
    confusion {k: other} puts 0.45 on chars[k] and 0.55 on other."""
    probs = np.full((len(chars), NONE + 1), 0.1 / NONE, np.float32)
    for k, ch in enumerate(chars):
        if k in rejected:
            probs[k, NONE] = 0.9
        elif confusion and k in confusion:
            probs[k, CHARSET.index(ch)], probs[k, CHARSET.index(confusion[k])] = 0.45, 0.55
        else:
            probs[k, CHARSET.index(ch)] = 0.9
    return probs


def proposal_of(n: int) -> Reading:
    glyphs = tuple(Glyph("x", 0.5, (10.0 + 20 * k, 5.0, 28.0 + 20 * k, 50.0)) for k in range(n))
    return Reading("x" * n, 0.5**n, glyphs)


def test_refine_drops_rejected_boxes_and_reads_with_the_guessed_alphabet():
    gcfg = GlyphConfig()
    # Glyph 2 is a doubled box; glyph 4 looks a little more like an l than a 1.
    probs = one_hot_probs("7706100", rejected={2}, confusion={4: "l"})
    reading = refine(proposal_of(7), probs, gcfg, alphabets=("0123456789", "0123456789abcdefghijklmnopqrstuvwxyz"))
    assert reading.text == "776100"
    assert [g.box[0] for g in reading.glyphs] == [10.0, 30.0, 70.0, 90.0, 110.0, 130.0]
    assert reading.glyphs[3].score == pytest.approx(0.45)
    assert reading.confidence == pytest.approx(0.9**5 * 0.45, rel=1e-5)
    # Without the guess the l wins; with symbols given, they decide.
    assert refine(proposal_of(7), probs, gcfg, ("0123456789",), guess=False).text == "776l00"
    assert refine(proposal_of(7), probs, gcfg, (), symbols="0123456789").text == "776100"
    assert refine(proposal_of(0), probs[:0], gcfg, ("0123456789",)).text == ""


def test_crop_centres_are_input_columns_padded_per_batch():
    gcfg = GlyphConfig()
    centres = crop_centres([proposal_of(2), proposal_of(0)], [(320, 120), (160, 60)], gcfg)
    # Box 10..28 of a 320 px wide image is centred at column 19 * 160 / 320 = 9.5 -> 10.
    assert centres.tolist() == [[10, 20], [0, 0]]
    assert crop_centres([proposal_of(0)], [(160, 60)], gcfg).shape == (1, 1)


def column_reader(table: np.ndarray):
    """A stand-in glyph reader whose reading of a crop depends only on its column: table [W, C + 1]."""
    return lambda images, centres: table[np.asarray(centres)]


def test_a_second_look_brings_back_a_glyph_beside_its_box_but_not_a_doubled_box():
    gcfg = GlyphConfig(relook_step=3, relook_steps=2, relook_separation=10)
    table = np.full((160, NONE + 1), 0.0, np.float32)
    table[:, NONE] = 1.0  # no glyph anywhere ...
    for column, char in ((20, "4"), (46, "7"), (60, "7"), (83, "2")):  # ... but at these columns
        table[column] = one_hot_probs(char)[0]
    # Boxes centred at columns 20, 40 (the 7 at 46 is 6 columns off), 57 (the 7 at 60 again: a
    # doubled box once 46 is kept? no: 60 is 14 columns from 46, a glyph of its own), 80 (the 2
    # at 83, 3 off) and 63 (a second box on the 7 at 60, 3 columns off).
    boxes = [(c - 9.0, 5.0, c + 9.0, 50.0) for c in (20, 40, 57, 63, 80)]
    proposal = Reading("", 0.0, tuple(Glyph("x", 0.5, b) for b in boxes))
    found = [(proposal, np.ones((5, NONE), np.float32))]
    columns, probs, seconds = look_twice(np.zeros((1, 64, 160, 3), np.uint8), found, [(160, 64)], gcfg,
                                         column_reader(table))
    assert columns.tolist() == [[20, 40, 57, 63, 80]]
    reading = refine(proposal, probs[0], gcfg, (), columns=columns[0], second=seconds[0])
    # 40 finds the 7 at 46 (+6, after +3 and -3 read nothing); 57 the 7 at 60 (+3); 63 finds
    # that 7 too (-3), 3 columns from 57's: a doubled box; 80 finds the 2 at 83.
    assert reading.text == "4772"
    assert [g.box[0] for g in reading.glyphs] == [11.0, 31.0, 48.0, 71.0]
    # Without the second look only the glyph the detector centred on is read.
    assert refine(proposal, probs[0], gcfg, ()).text == "4"
    # With a known length the reader runs once and keeps the `length` likeliest crops.
    _, _, once = look_twice(np.zeros((1, 64, 160, 3), np.uint8), found, [(160, 64)], gcfg, column_reader(table), length=2)
    assert once == [None]


def two_stage_package(untrained_package, tmp_path: Path, seed: int = 0) -> Path:
    import keras

    from kdetect.training.packaging import attach_glyph_reader

    keras.utils.set_random_seed(seed)
    gcfg = GlyphConfig(proposal_threshold=0.0005, reject_threshold=0.99)
    weights = tmp_path / "glyphs.weights.h5"
    build_glyph_reader(gcfg).save_weights(str(weights))
    summary = {"train_images": 10, "train_data": "test", "val_crop_accuracy": 0.5}
    return attach_glyph_reader(untrained_package(seed), weights, gcfg.to_json(), summary, tmp_path / "two-stage")


@pytest.mark.slow  # builds and saves several packages: ~10 s
def test_two_stage_package_reads_alike_on_both_backends(untrained_package, tmp_path):
    from kdetect.serving.solver import Solver

    package = two_stage_package(untrained_package, tmp_path)
    assert "Second stage" in (package / "MODEL_CARD.md").read_text()
    images = [np.random.default_rng(k).integers(0, 255, (60, 160, 3), dtype=np.uint8) for k in range(6)]
    lite, graph = Solver(package).read_batch(images), Solver(package, backend="tf").read_batch(images)
    assert any(r.glyphs for r in lite)
    for a, b in zip(lite, graph):
        assert a.text == b.text
        np.testing.assert_allclose([g.score for g in a.glyphs], [g.score for g in b.glyphs], rtol=1e-3, atol=1e-5)


@pytest.mark.slow  # builds and saves several packages: ~10 s
def test_the_glyph_reader_travels_with_its_detector(untrained_package, tmp_path):
    from kdetect.errors import ConfigError
    from kdetect.package import load_glyph_reader
    from kdetect.training.compact import compact_package, uint8_grid
    from kdetect.training.soup import average_packages

    package = two_stage_package(untrained_package, tmp_path)
    compacted = compact_package(package, tmp_path / "compacted")
    reader, gcfg = load_glyph_reader(compacted)
    assert gcfg.reject_threshold == 0.99
    for w in reader.get_weights():
        np.testing.assert_array_equal(w, uint8_grid(w))  # on the grid the browser's uint8 export uses
    other = tmp_path / "copy"
    shutil.copytree(package, other)
    average_packages([package, other], tmp_path / "soup")
    kept, _ = load_glyph_reader(tmp_path / "soup")
    original, _ = load_glyph_reader(package)
    for a, b in zip(kept.get_weights(), original.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="different glyph readers"):
        average_packages([package, untrained_package(0)], tmp_path / "soup2")
    # A new reader for a compacted two-stage package (a release kept while its reader is
    # retrained): the card describes the new reader only, and compacting again says so once.
    from kdetect.training.packaging import attach_glyph_reader

    summary = {"train_images": 20, "train_data": "newer", "val_crop_accuracy": 0.75}
    again = attach_glyph_reader(compacted, compacted / "glyphs.weights.h5", gcfg.to_json(), summary, tmp_path / "again")
    card = compact_package(again, tmp_path / "again-compacted") / "MODEL_CARD.md"
    lines = card.read_text().splitlines()
    readers = [line for line in lines if line.startswith("- Second stage")]
    assert len(readers) == 1 and "20 synthetic captchas (newer)" in readers[0]
    assert sum(line.startswith("- Compacted for shipping") for line in lines) == 1


def test_a_known_length_keeps_the_crops_likeliest_to_hold_glyphs():
    gcfg = GlyphConfig()
    probs = one_hot_probs("123456", rejected={1, 4})
    probs[4, NONE], probs[4, CHARSET.index("5")] = 0.6, 0.35  # glyph 4's crop is less surely empty than glyph 1's
    assert refine(proposal_of(6), probs, gcfg, ()).text == "1346"
    assert refine(proposal_of(6), probs, gcfg, (), length=5).text == "13456"
    assert refine(proposal_of(6), probs, gcfg, (), length=3).text == "134"  # ties: the first, as argsort


def test_the_detector_weighs_in_on_a_doubtful_glyph():
    gcfg = GlyphConfig(detector_weight=0.5)
    probs = one_hot_probs("68", confusion={0: "8"})  # the reader: 0.45 '6', 0.55 '8'
    detector = np.full((2, NONE), 0.01, np.float32)
    detector[0, CHARSET.index("6")], detector[1, CHARSET.index("8")] = 0.9, 0.9
    assert refine(proposal_of(2), probs, gcfg, ()).text == "88"
    reading = refine(proposal_of(2), probs, gcfg, (), detector_probs=detector)
    assert reading.text == "68"
    # The weighed probabilities still leave "no glyph" its share.
    assert 0.95 < reading.glyphs[1].score <= 1 - probs[1, NONE] + 1e-6
    assert refine(proposal_of(2), probs, GlyphConfig(detector_weight=0.0), (), detector_probs=detector).text == "88"


def test_glyph_config_bounds_its_second_look_and_input_size():
    from kdetect.errors import ConfigError

    assert GlyphConfig(relook_step=3, relook_steps=2).relook_offsets == [3, -3, 6, -6]
    assert GlyphConfig(relook_steps=0).relook_offsets == []
    for bad in ({"relook_steps": 9}, {"relook_step": 0}, {"relook_separation": -1}, {"input_width": 20000}):
        with pytest.raises(ConfigError):
            GlyphConfig.from_dict(bad)


def test_crop_samples_are_a_crop_near_each_glyph_between_them_and_anywhere_all_labelled():
    example = {"image": tf.zeros((60, 160, 3), tf.uint8), "labels": tf.constant([3, 5]),
               "boxes": tf.constant([[20.0, 5.0, 36.0, 50.0], [80.0, 5.0, 100.0, 50.0]])}
    crops, labels = crop_samples(example, tf.constant([1, 2], tf.int64), GlyphConfig())
    # One crop near each glyph, one between them, three anywhere, of which one lands too near a
    # glyph to be "no glyph" and too far to be it at this seed: nothing to learn, left out.
    assert crops.shape == (5, 64, 40, 3)
    assert sorted(labels.numpy().tolist()) == [3, 5] + [NONE] * 3


def test_the_glyph_loss_of_a_known_prediction():
    loss = glyph_loss(num_classes=3)
    outputs = np.zeros((3, 3), np.float32)
    outputs[1] = [0.0, 0.0, np.log(2.0)]
    got = np.asarray(loss(tf.constant([2, 2, -1]), tf.constant(outputs)))
    # Even logits: log 3; class 2 at twice the others' odds: log 2; no class to learn: nothing.
    np.testing.assert_allclose(got, [np.log(3), np.log(2), 0.0], rtol=1e-6)



