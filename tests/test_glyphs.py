"""The second stage: crops, their labels, decoding with the glyph reader, and its package."""

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from kdetect.glyphs.config import GlyphConfig
from kdetect.glyphs.decode import crop_centres, look_twice, merged, refine
from kdetect.glyphs.loss import glyph_loss
from kdetect.glyphs.model import build_glyph_reader, crop_columns, serving_glyph_reader
from kdetect.glyphs.samples import crop_samples, label_positions, offset_targets
from kdetect.readings import Glyph, Reading

WEB = Path(__file__).resolve().parents[1] / "web"
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


def test_a_tightly_centred_reader_calls_a_crop_a_few_columns_off_no_glyph():
    centres, widths = tf.constant([20.0, 27.0]), tf.constant([20.0, 20.0])  # two 1s packed 7 px apart
    positions = tf.constant([20.0, 22.0, 23.0, 27.0, 31.0, 24.0, 33.0])
    loose = label_positions(positions, centres, widths, tf.constant([1, 1]), NONE).numpy()
    tight = label_positions(positions, centres, widths, tf.constant([1, 1]), NONE, centring=0.6).numpy()
    # At 1, near is 3 px and far 7: every crop between the two reads as a 1, and 4 or 6 px right
    # of the second is ambiguous. At 0.6, near is 1.8 px and far 4.2: 2 or 3 px off is no longer
    # the glyph, and 6 px off the second (4 px is ambiguous still) reads "no glyph".
    assert loose.tolist() == [1, 1, 1, 1, -1, 1, -1]
    assert tight.tolist() == [1, -1, -1, 1, -1, -1, NONE]


def test_crops_for_a_tightly_centred_reader_include_crops_beside_each_glyph():
    example = {"image": tf.zeros((60, 160, 3), tf.uint8), "labels": tf.constant([3, 5]),
               "boxes": tf.constant([[20.0, 5.0, 36.0, 50.0], [80.0, 5.0, 100.0, 50.0]])}
    seed = tf.constant([1, 2], tf.int64)
    crops, tight = crop_samples(example, seed, GlyphConfig(centring=0.5))
    tight = tight.numpy()[:, 0]
    # One crop near each glyph, one between them, three anywhere (all far from both at this
    # seed), and one beside each glyph: 3 to 8 px off, beyond far (3.5 px here), "no glyph".
    assert crops.shape[0] == 8 and sorted(tight.tolist()) == [3, 5] + [NONE] * 6


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


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
@pytest.mark.parametrize("centre_offset", [False, True])
def test_javascript_second_stage_matches_python(tmp_path, centre_offset):
    gcfg = GlyphConfig(centre_offset=centre_offset, merge_distance=4.0)
    rng = np.random.default_rng(4)
    alphabets = ("0123456789", "0123456789", "23456789abcdegikpqsvxyz", "0123456789abcdefghijklmnopqrstuvwxyz")
    cases = []
    for n in range(16):
        k = int(rng.integers(0, 9))
        # A reading per column, "no glyph" at most columns, so first looks drop and second looks find.
        table = rng.dirichlet(np.full(NONE + 1, 0.3), size=160).astype(np.float32)
        table[rng.uniform(size=160) < 0.6] = np.eye(NONE + 1, dtype=np.float32)[NONE] * 0.9 + 0.1 / (NONE + 1)
        if centre_offset:  # offsets that often put two crops' glyphs within merge_distance
            table = np.concatenate([table, rng.uniform(-6, 6, (160, 1)).astype(np.float32)], 1)
        detector = rng.uniform(0, 1, (k, NONE)).astype(np.float32) if n % 2 else None
        width = int(rng.choice([160, 200, 320]))
        spans = np.sort(rng.uniform(0, width, (k, 2)), axis=1)
        spans = spans[np.argsort(spans.mean(1), kind="stable")].tolist()
        proposal = Reading("", 0.0, tuple(Glyph("x", 0.5, (x0, 3.0, x1, 50.0)) for x0, x1 in spans))
        length = 4 if n % 3 == 0 else None
        columns, probs, seconds = look_twice(np.zeros((1, 60, width, 3), np.uint8), [(proposal, detector)],
                                             [(width, 60)], gcfg, column_reader(table), length)
        expected = refine(proposal, probs[0], gcfg, alphabets, length=length, detector_probs=detector,
                          columns=columns[0], second=seconds[0])
        unmerged = refine(proposal, probs[0], dataclasses.replace(gcfg, merge_distance=0.0), alphabets, length=length,
                          detector_probs=detector, columns=columns[0], second=seconds[0])
        cases.append({
            "merged": len(unmerged.text) > len(expected.text),
            "proposal": {"glyphs": [{"box": list(g.box)} for g in proposal.glyphs],
                         **({"classProbs": detector.tolist()} if detector is not None else {})},
            "width": width, "length": length, "table": table.tolist(),
            "centres": columns[0].tolist(), "relooked": seconds[0] is not None,
            "text": expected.text, "scores": [g.score for g in expected.glyphs],
        })
    assert any(c["relooked"] for c in cases) and any(not c["relooked"] for c in cases)
    if centre_offset:  # merging must have dropped some glyph the reader kept
        assert any(c["merged"] for c in cases)
    meta = {"alphabets": list(alphabets), "glyphs": json.loads(gcfg.to_json())}
    (tmp_path / "cases.json").write_text(json.dumps({"meta": meta, "cases": cases}))
    script = tmp_path / "check.mjs"
    script.write_text(
        f"import {{ cropCentres, refine, relookCentres, secondLooks }} from {json.dumps((WEB / 'decode.js').as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        f"const {{ meta, cases }} = JSON.parse(readFileSync({json.dumps(str(tmp_path / 'cases.json'))}, 'utf8'));\n"
        "const read = (table, columns) => Array.from(columns, (c) => table[c]);\n"
        "const out = cases.map((c) => {\n"
        "  const columns = cropCentres(c.proposal, c.width, meta);\n"
        "  const probs = read(c.table, columns);\n"
        "  const relook = relookCentres(c.proposal, probs, columns, meta, { length: c.length });\n"
        "  const second = relook ? secondLooks(read(c.table, relook.columns), relook.slots, meta) : null;\n"
        "  const r = refine(c.proposal, probs, meta, { length: c.length, columns, second });\n"
        "  return { text: r.text, scores: r.glyphs.map((g) => g.score), centres: Array.from(columns), relooked: relook !== null };\n"
        "});\n"
        "console.log(JSON.stringify(out));\n")
    proc = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for case, got in zip(cases, json.loads(proc.stdout)):
        assert got["text"] == case["text"]
        np.testing.assert_allclose(got["scores"], case["scores"], rtol=1e-5)
        assert got["centres"] == case["centres"]
        assert got["relooked"] == case["relooked"]


def two_stage_package(untrained_package, tmp_path: Path, seed: int = 0) -> Path:
    import keras

    from kdetect.training.packaging import attach_glyph_reader

    keras.utils.set_random_seed(seed)
    gcfg = GlyphConfig(proposal_threshold=0.0005, reject_threshold=0.99)
    weights = tmp_path / "glyphs.weights.h5"
    build_glyph_reader(gcfg).save_weights(str(weights))
    summary = {"train_images": 10, "train_data": "test", "val_crop_accuracy": 0.5}
    return attach_glyph_reader(untrained_package(seed), weights, gcfg.to_json(), summary, tmp_path / "two-stage")


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


def test_offset_targets_point_at_the_nearest_centre_unless_two_are_about_as_near():
    positions = tf.constant([10.0, 20.0, 35.0, 24.0, 23.0, 50.0])
    targets = offset_targets(positions, tf.constant([18.0, 30.0])).numpy()
    # 24 is 6 from both (either would be fair), 23 is 5 and 7 (2 nearer: learnt), 50 is 20 from the nearest.
    np.testing.assert_array_equal(targets[:3], [8.0, -2.0, -5.0])
    assert np.isnan(targets[3]) and targets[4] == -5.0 and np.isnan(targets[5])
    assert np.isnan(offset_targets(positions, tf.zeros([0])).numpy()).all()


def test_crops_for_a_reader_with_centre_offsets_carry_both_targets():
    example = {"image": tf.zeros((60, 160, 3), tf.uint8), "labels": tf.constant([3, 5]),
               "boxes": tf.constant([[20.0, 5.0, 36.0, 50.0], [80.0, 5.0, 100.0, 50.0]])}
    seed = tf.constant([1, 2], tf.int64)
    _, plain = crop_samples(example, seed, GlyphConfig())
    crops, targets = crop_samples(example, seed, GlyphConfig(centre_offset=True))
    plain, targets = plain.numpy(), targets.numpy()
    assert plain.shape[1] == 2 and np.isnan(plain[:, 1]).all() and (plain[:, 0] >= 0).all()
    assert crops.shape[0] == targets.shape[0] > plain.shape[0]  # the off-centre crops on top
    learnt = np.isfinite(targets[:, 1])
    assert learnt.any() and (np.abs(targets[learnt, 1]) <= 12).all()
    assert crops.shape[1:] == (64, 40, 3)


def test_the_glyph_loss_of_a_known_prediction():
    loss = glyph_loss(num_classes=3, offset_weight=0.5)
    targets = np.array([[2, 1.5], [-1, -0.5], [0, np.nan], [-1, np.nan]], np.float32)
    outputs = np.zeros((4, 4), np.float32)
    outputs[:, 3] = [0.0, 2.5, 9.0, 9.0]
    got = np.asarray(loss(tf.constant(targets), tf.constant(outputs)))
    # Even logits: log 3 per crop with a class. Offsets: error 1.5 -> 1.5 - 0.5 = 1.0 (linear past
    # delta 1), error 3 -> 2.5; nothing where there is no offset to learn.
    np.testing.assert_allclose(got, [np.log(3) + 0.5 * 1.0, 0.5 * 2.5, np.log(3), 0.0], rtol=1e-6)
    outputs[1, 3] = -0.1  # error 0.4: squared under delta
    np.testing.assert_allclose(np.asarray(loss(tf.constant(targets), tf.constant(outputs)))[1], 0.5 * 0.5 * 0.16, rtol=1e-5)
    # A reader without offsets: the cross-entropy alone.
    plain = np.asarray(glyph_loss(3, 0.5)(tf.constant(targets), tf.constant(outputs[:, :3])))
    np.testing.assert_allclose(plain, [np.log(3), 0.0, np.log(3), 0.0], rtol=1e-6)


def test_merged_keeps_the_preferred_of_glyphs_whose_centres_meet():
    centres = np.array([10.0, 12.5, 16.0, 40.0])
    assert merged([0, 1, 2, 3], centres, 4.0) == [0, 2, 3]
    assert merged([1, 0, 2, 3], centres, 4.0) == [1, 3]  # 16 is 3.5 from 12.5: the same glyph
    assert merged([1, 0, 2, 3], centres, 0.0) == [1, 0, 2, 3]


def with_offsets(probs: np.ndarray, offsets: list[float]) -> np.ndarray:
    return np.concatenate([probs, np.asarray(offsets, np.float32)[:, None]], 1)


def test_centre_offsets_merge_a_doubled_box_and_keep_a_packed_pair():
    gcfg = GlyphConfig(centre_offset=True, merge_distance=4.0)
    # Crops at columns 20, 25 (the 1 at 20, boxed twice), 60, 66 (two 1s packed 6 apart), 100.
    columns = np.array([20, 25, 60, 66, 100])
    probs = with_offsets(one_hot_probs("11117"), [0.5, -4.0, 0.0, 0.5, 0.0])
    probs[1, NONE], probs[1, CHARSET.index("1")] = 0.2, 0.8  # the doubled box is the less sure one
    proposal = proposal_of(5)
    assert refine(proposal, probs, gcfg, (), columns=columns).text == "1117"
    kept = refine(proposal, probs, gcfg, (), columns=columns)
    assert [g.box for g in kept.glyphs] == [proposal.glyphs[k].box for k in (0, 2, 3, 4)]
    # Without columns nothing says where the glyphs are: every kept crop is a glyph.
    assert refine(proposal, probs, gcfg, ()).text == "11117"
    # A known length counts the merged glyphs.
    assert refine(proposal, probs, gcfg, (), length=4, columns=columns).text == "1117"
    # A reader without offsets reads the same crops without the last column.
    assert refine(proposal, probs[:, :-1], GlyphConfig(), (), columns=columns).text == "11117"


def test_a_second_look_with_offsets_finds_a_new_glyph_but_not_one_already_kept():
    gcfg = GlyphConfig(centre_offset=True, relook_step=3, relook_steps=1, merge_distance=4.0)
    table = np.zeros((160, NONE + 2), np.float32)
    table[:, NONE] = 1.0
    for column, char, offset in ((20, "4", 0.0), (43, "7", 3.0), (50, "7", -4.0), (83, "2", 0.0)):
        table[column, :NONE + 1] = one_hot_probs(char)[0]
        table[column, -1] = offset
    # Boxes at 20 (the 4), 40 (its +3 look reads a 7 centred at 46: new), 53 (its -3 look reads a
    # 7 centred at 46 again: the same glyph) and 83 (the 2).
    boxes = [(c - 9.0, 5.0, c + 9.0, 50.0) for c in (20, 40, 53, 83)]
    proposal = Reading("", 0.0, tuple(Glyph("x", 0.5, b) for b in boxes))
    found = [(proposal, None)]
    columns, probs, seconds = look_twice(np.zeros((1, 64, 160, 3), np.uint8), found, [(160, 64)], gcfg,
                                         column_reader(table))
    reading = refine(proposal, probs[0], gcfg, (), columns=columns[0], second=seconds[0])
    assert reading.text == "472"
    assert [g.box[0] for g in reading.glyphs] == [11.0, 31.0, 74.0]


def test_a_reader_with_centre_offsets_serves_probabilities_and_the_offset():
    gcfg = GlyphConfig(centre_offset=True)
    reader = build_glyph_reader(gcfg)
    assert reader.output_shape == (None, NONE + 2)
    serving = serving_glyph_reader(reader, gcfg)
    image = np.random.default_rng(0).uniform(0, 255, (2, 60, 160, 3)).astype(np.float32)
    out = np.asarray(serving([image, np.array([[20, 80, 120], [5, 60, 159]], np.int32)]))
    assert out.shape == (2, 3, NONE + 2)
    np.testing.assert_allclose(out[..., :NONE + 1].sum(-1), 1.0, rtol=1e-5)
    from kdetect.detector.preprocess import preprocess

    crops = np.asarray(crop_columns(preprocess(image, gcfg), np.array([[20, 80, 120], [5, 60, 159]]), 40))
    raw = np.asarray(reader(crops.reshape(6, 64, 40, 3))).reshape(2, 3, NONE + 2)
    np.testing.assert_allclose(out[..., -1], raw[..., -1], rtol=1e-4, atol=1e-4)  # the offset, untouched


def test_glyph_config_bounds_its_merging():
    from kdetect.errors import ConfigError

    assert GlyphConfig(centre_offset=True).num_outputs == NONE + 2 and GlyphConfig().num_outputs == NONE + 1
    for bad in ({"merge_distance": -1}, {"proposal_nms_iou": 0.0}, {"proposal_nms_iou": 1.5}, {"centre_offset": 1},
                {"centring": 0.1}, {"centring": 5}):
        with pytest.raises(ConfigError):
            GlyphConfig.from_dict(bad)


def test_crops_read_right_needs_the_class_and_a_close_offset():
    from kdetect.training.glyphs import crop_scores

    reader = build_glyph_reader(GlyphConfig(centre_offset=True))
    for layer in reader.layers:  # a reader that reads every crop as class 2, its glyph 2 columns right
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    logits_bias = np.zeros(NONE + 1, np.float32)
    logits_bias[2] = 5.0
    reader.get_layer("g_logits").set_weights([np.zeros((128, NONE + 1), np.float32), logits_bias])
    kernel, _ = reader.get_layer("g_offset").get_weights()
    reader.get_layer("g_offset").set_weights([kernel, np.array([0.25], np.float32)])  # x 8 columns
    crops = np.zeros((5, 64, 40, 3), np.float32)
    targets = np.array([[2, 1.0], [2, 4.0], [3, np.nan], [-1, 2.5], [2, np.nan]], np.float32)
    # 1 column off: right; 2 off: wrong; class 3: wrong; no class and 0.5 off: right; class 2: right.
    scores = crop_scores(reader, crops, targets, NONE + 1)
    assert scores["read_right"] == pytest.approx(3 / 5)
    assert scores["crop_accuracy"] == pytest.approx(3 / 4)  # the crops with a class


def test_offset_only_training_needs_a_reader_with_offsets_to_start_from():
    from kdetect.errors import ConfigError
    from kdetect.training.glyphs import GlyphTrainConfig

    paths = {"train_data": "t", "val_data": "v", "out_dir": "o"}
    with pytest.raises(ConfigError, match="offset_only"):
        GlyphTrainConfig.from_dict({**paths, "offset_only": True, "init_from": "pkg"})
    with pytest.raises(ConfigError, match="offset_only"):
        GlyphTrainConfig.from_dict({**paths, "offset_only": True, "glyphs": {"centre_offset": True}})
    assert GlyphTrainConfig.from_dict({**paths, "offset_only": True, "init_from": "pkg",
                                       "glyphs": {"centre_offset": True}}).offset_only
