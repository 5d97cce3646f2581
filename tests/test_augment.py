"""Augmentation keeps every glyph's ink inside its box."""

import numpy as np
import pytest
from PIL import Image

from kdetect.data import renderer
from kdetect.data.augment import Augmenter


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_boxes_still_enclose_glyph_ink_after_augmentation(make_config, tmp_path):
    config = make_config("varlen", format="png", white_noise_density=0.0, black_noise_density=0.0)
    anns = list(renderer.render(config, seed=2, start=0, count=4, out_dir=tmp_path / "full"))
    augment = Augmenter()
    checked = 0
    for k in range(2):  # every answer has at least two glyphs
        solo = list(renderer.render(config, seed=2, start=0, count=4, out_dir=tmp_path / f"s{k}", solo=k))
        for ann, alone in zip(anns, solo):
            image = np.asarray(Image.open(tmp_path / "full" / ann["file"]).convert("RGB"))
            ink = (np.asarray(Image.open(tmp_path / f"s{k}" / alone["file"]).convert("L")) < 255).astype(np.uint8)
            boxes = np.array([b[:4] for b in ann["boxes"]], np.float32)
            labels = np.arange(len(boxes), dtype=np.int32)
            for seed in range(6):
                out, out_boxes, out_labels, out_ink = augment(image, boxes, labels, seed, mask=ink)
                assert out.shape == image.shape and out.dtype == np.uint8
                if k not in out_labels:
                    continue  # the glyph was pushed out of the picture, and its box dropped with it
                x0, y0, x1, y1 = out_boxes[list(out_labels).index(k)]
                ys, xs = np.nonzero(out_ink)
                # One pixel of slack: the ink mask is resampled by nearest neighbour.
                assert xs.min() >= x0 - 1 and xs.max() + 1 <= x1 + 1
                assert ys.min() >= y0 - 1 and ys.max() + 1 <= y1 + 1
                checked += 1
    assert checked > 20


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_augmenter_is_deterministic_per_seed(make_config, tmp_path):
    config = make_config("gnuboard5")
    ann = next(renderer.render(config, seed=1, start=0, count=1, out_dir=tmp_path))
    image = np.asarray(Image.open(tmp_path / ann["file"]).convert("RGB"))
    boxes = np.array([b[:4] for b in ann["boxes"]], np.float32)
    labels = np.zeros(len(boxes), np.int32)
    a = Augmenter()(image, boxes, labels, 7)
    b = Augmenter()(image, boxes, labels, 7)
    c = Augmenter()(image, boxes, labels, 8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.slow  # draws captchas with the PHP renderer
def test_augmentation_changes_images_and_augment_dataset_applies_its_fraction(make_config, tmp_path):
    import tensorflow as tf

    from kdetect.data.augment import augment_dataset

    config = make_config("gnuboard5")
    anns = list(renderer.render(config, seed=3, start=0, count=4, out_dir=tmp_path))
    images = [np.asarray(Image.open(tmp_path / a["file"]).convert("RGB")) for a in anns]
    boxes = [np.array([b[:4] for b in a["boxes"]], np.float32) for a in anns]
    changed = sum(not np.array_equal(Augmenter()(images[0], boxes[0], np.zeros(len(boxes[0]), np.int32), seed)[0], images[0])
                  for seed in range(10))
    assert changed >= 5  # an augmenter that did nothing would change none (some draws apply nothing)

    def examples():
        for image, box in zip(images, boxes):
            yield {"image": image, "boxes": box, "labels": np.zeros(len(box), np.int32)}

    spec = {"image": tf.TensorSpec(images[0].shape, tf.uint8), "boxes": tf.TensorSpec([None, 4], tf.float32),
            "labels": tf.TensorSpec([None], tf.int32)}
    ds = tf.data.Dataset.from_generator(examples, output_signature=spec)
    untouched = [e["image"] for e in augment_dataset(ds, seed=5, fraction=0.0).as_numpy_iterator()]
    assert all(np.array_equal(a, b) for a, b in zip(untouched, images))
    augmented = [e["image"] for e in augment_dataset(ds, seed=5, fraction=1.0).as_numpy_iterator()]
    assert sum(not np.array_equal(a, b) for a, b in zip(augmented, images)) >= 3
