"""Box-aware augmentation with albumentations, and its place in the tf.data pipeline.

Geometry stays mild (captchas are already wave-distorted, and a rotated box only grows to
enclose its glyph), while photometric changes vary freely: re-compression, blur, colour, noise.
"""

from __future__ import annotations

import threading

import albumentations as A
import cv2
import numpy as np


def make_transform() -> A.Compose:
    return A.Compose(
        [
            A.Affine(scale=(0.92, 1.08), translate_percent={"x": (-0.04, 0.04), "y": (-0.06, 0.06)},
                     rotate=(-3, 3), shear={"x": (-6, 6), "y": (0, 0)}, border_mode=cv2.BORDER_REPLICATE, p=0.7),
            A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.2, 0.8), p=0.15),
            A.ImageCompression(quality_range=(45, 95), p=0.4),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.2, p=0.3),
            A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=10, p=0.2),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        ],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3, clip=True),
    )


class Augmenter:
    """Applies the transform with a seed per example, so results do not depend on thread timing."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _transform(self) -> A.Compose:
        if not hasattr(self._local, "transform"):
            self._local.transform = make_transform()
        return self._local.transform

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, seed: int,
                 mask: np.ndarray | None = None) -> tuple:
        """image uint8 [H, W, 3], boxes float32 [N, 4] pixels (x0, y0, x1, y1), labels int32 [N]."""
        transform = self._transform()
        transform.set_random_seed(int(seed))
        extra = {} if mask is None else {"mask": mask}
        out = transform(image=image, bboxes=boxes.reshape(-1, 4), labels=labels, **extra)
        result = (out["image"], np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
                  np.asarray(out["labels"], np.int32).reshape(-1))
        return result + ((out["mask"],) if mask is not None else ())


def augment_dataset(ds, seed: int, fraction: float = 1.0):
    """Map a dataset of decode_example dicts through the augmenter; deterministic for a seed.

    Only `fraction` of the examples go through it: each call crosses into Python under the GIL,
    which on a 2-core machine costs about as much as the training step, and the renderer already
    randomises most of what augmentation adds."""
    import tensorflow as tf

    augmenter = Augmenter()

    def augment(example: dict, element_seed: tf.Tensor) -> dict:
        image, boxes, labels = tf.numpy_function(
            lambda i, b, l, s: augmenter(i, b, l, s[0]),
            [example["image"], example["boxes"], example["labels"], element_seed],
            [tf.uint8, tf.float32, tf.int32])
        image.set_shape(example["image"].shape)
        boxes.set_shape([None, 4])
        labels.set_shape([None])
        return {"image": image, "boxes": boxes, "labels": labels}

    def apply(example: dict, element_seed: tf.Tensor) -> dict:
        chosen = tf.cast(element_seed[0] % 1_000_000, tf.float32) < fraction * 1_000_000
        plain = {k: example[k] for k in ("image", "boxes", "labels")}
        picked = tf.cond(chosen, lambda: augment(example, element_seed), lambda: plain)
        return {**example, **picked}

    seeds = tf.data.Dataset.random(seed=seed).map(lambda s: tf.reshape(s % (2**31), [1]))
    return tf.data.Dataset.zip(ds, seeds).map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
