"""`solve(image) -> str` and the Solver that keeps a model loaded."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from kdetect.images import ImageLike, load_image
from kdetect.package import default_model_dir, load_package
from kdetect.yolo.decode import Reading, decode_batch


class Solver:
    """Reads captchas with one model package, loaded on first use and kept."""

    def __init__(self, model_dir: str | Path | None = None):
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self._lock = threading.Lock()
        self._infer = None
        self.config = None

    def _load(self) -> None:
        with self._lock:
            if self._infer is not None:
                return
            import tensorflow as tf

            from kdetect.yolo.preprocess import preprocess

            detector, cfg = load_package(self.model_dir)

            # Compiled once: a plain Keras call re-traces Python for every image and costs tens of ms.
            @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], reduce_retracing=True)
            def infer(images):
                return detector(preprocess(images, cfg), training=False)

            self.config, self._infer = cfg, infer

    def read(self, image: ImageLike) -> Reading:
        """The detailed answer for one image: text, confidence, and each glyph's char, score and box."""
        return self.read_batch([image])[0]

    def read_batch(self, images: Iterable[ImageLike], batch_size: int = 64) -> list[Reading]:
        """Readings for many images; same-sized images run through the network together."""
        self._load()
        arrays = [load_image(im) for im in images]
        readings: list[Reading | None] = [None] * len(arrays)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, a in enumerate(arrays):
            by_size.setdefault(a.shape[:2], []).append(i)
        for (h, w), indices in by_size.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                outputs = self._infer(np.stack([arrays[i] for i in chunk]))
                for i, r in zip(chunk, decode_batch([o.numpy() for o in outputs], self.config, [(w, h)] * len(chunk))):
                    readings[i] = r
        return readings

    def solve(self, image: ImageLike) -> str:
        return self.read(image).text


_default: Solver | None = None
_default_lock = threading.Lock()


def solve(image: ImageLike) -> str:
    """The answer of one captcha, read with the shipped default model."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Solver()
    return _default.solve(image)
