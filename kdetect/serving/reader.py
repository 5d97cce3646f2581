"""What every model reader shares: lazy loading, every input form, batching same-sized images."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from kdetect.errors import ConfigError
from kdetect.extras import TRAIN, installed, require
from kdetect.images import ImageLike, load_image
from kdetect.readings import Reading


BACKENDS = ("lite", "tf")
# Pixels one network call takes at most: the batch of 64 captchas it is sized for, and a few of
# the largest images load_image lets in (the network turns every pixel into floats first).
BATCH_PIXELS = 16_000_000


def check_options(backend: str, length: int | None) -> None:
    """Refuse a backend kdetect has not, and a length that is no number of characters."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if length is not None and (not isinstance(length, int) or length < 1):
        raise ConfigError(f"length must be a positive number of characters, not {length!r}")


class Reader(ABC):
    """Reads captchas with one model package, loaded on first use and kept."""

    def __init__(self, model_dir: str | Path, symbols: str | None = None, backend: str = "lite",
                 guess_alphabet: bool = True, length: int | None = None):
        check_options(backend, length)
        self.model_dir = Path(model_dir)
        # How the network runs: "lite" (TFLite, the fast default on CPUs) or "tf" (a TF graph).
        self.backend = backend
        # The characters the captchas are known to use (a site's allowed_symbols), if given.
        self.symbols = symbols
        # Without symbols: read each captcha with the training alphabet its glyphs point to, where
        # the model knows its alphabets (kdetect/alphabet.py).
        self.guess_alphabet = guess_alphabet
        # The answer length the site uses, if known (every read may also say it): a detector then
        # reads that many glyphs. None: a fine-tuned package's recorded length, else any.
        self.length = length
        self.config = None  # the package's model config, once loaded
        self._lock = threading.Lock()
        self._loaded = False

    @abstractmethod
    def _load_model(self) -> None:
        """Load the network and set self.config."""

    @abstractmethod
    def _read_arrays(self, images: np.ndarray, size: tuple[int, int], length: int | None = None) -> list[Reading]:
        """Readings of same-sized uint8 images [B, H, W, 3]; size is their (width, height);
        length the answer length, if known."""

    def check_length(self, length: int | None) -> None:
        """Raise LengthError if this model cannot read answers of `length` characters; the
        default reads any length."""

    def load(self) -> None:
        with self._lock:
            if not self._loaded:
                self._load_model()
                self._check_symbols()
                self._loaded = True

    def _check_symbols(self) -> None:
        unknown = sorted(set(self.symbols or "") - set(self.config.charset))
        if unknown or self.symbols == "":
            raise ConfigError(f"symbols {self.symbols!r} must be a non-empty subset of the model's charset "
                              f"{self.config.charset!r}; not in it: {''.join(unknown)}")

    def read(self, image: ImageLike, length: int | None = None) -> Reading:
        """The detailed answer for one image: text, confidence, and each glyph's char, score and box.
        length: the answer length expected, if known; a fixed-length model refuses another."""
        return self.read_batch([image], length=length)[0]

    def read_batch(self, images: Iterable[ImageLike], batch_size: int = 64,
                   length: int | None = None) -> list[Reading]:
        """Readings for many images; same-sized images run through the network together."""
        self.load()
        length = length if length is not None else self.length
        self.check_length(length)
        arrays = [load_image(im) for im in images]
        readings: list[Reading | None] = [None] * len(arrays)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, a in enumerate(arrays):
            by_size.setdefault(a.shape[:2], []).append(i)
        for (h, w), indices in by_size.items():
            step = max(1, min(batch_size, BATCH_PIXELS // (h * w)))
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                for i, r in zip(chunk, self._read_arrays(np.stack([arrays[i] for i in chunk]), (w, h), length)):
                    readings[i] = r
        return readings

    def solve(self, image: ImageLike, length: int | None = None) -> str:
        return self.read(image, length=length).text


def packaged_networks(model_dir: str | Path, backend: str) -> dict | None:
    """The package's own TFLite networks ({part: LiteInference}, see kdetect/serving/lite.py) where
    backend "lite" can run them; None where the Keras networks must be built (backend "tf", or
    TFLite files missing or stale, which TensorFlow converts). Without TensorFlow the latter is
    an error naming the extra to install."""
    if backend != "lite":
        require("tensorflow", TRAIN, "--backend tf")
        return None
    from kdetect.serving.lite import no_conversion_error, packaged_lite

    networks, why = packaged_lite(model_dir)
    if networks is None and not installed("tensorflow"):
        raise no_conversion_error(model_dir, why)
    return networks


def inference(model, cfg, model_dir: str | Path, backend: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """uint8 images [B, H, W, 3] of any size -> the network's outputs as NumPy arrays (a list,
    one per Keras output), run the way `backend` says."""
    if backend == "lite":
        from kdetect.serving.lite import lite_inference

        return lite_inference(model, cfg, model_dir)
    infer = compiled_inference(model, cfg)

    def run(images: np.ndarray) -> list[np.ndarray]:
        outputs = infer(images)
        return [o.numpy() for o in outputs] if isinstance(outputs, (list, tuple)) else [outputs.numpy()]

    return run


def glyph_inference(reader, gcfg, model_dir: str | Path, backend: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(uint8 images [B, H, W, 3], crop centres int32 [B, K]) -> the glyph reader's class
    probabilities [B, K, charset + 1], run the way `backend` says."""
    from kdetect.glyphs.model import serving_glyph_reader

    if backend == "lite":
        from kdetect.serving.lite import lite_inference

        run = lite_inference(reader, gcfg, model_dir, part="glyphs", serving=serving_glyph_reader(reader, gcfg, "uint8"))
        return lambda images, centres: run(images, centres)[0]
    import tensorflow as tf

    serving = serving_glyph_reader(reader, gcfg, "uint8")
    infer = tf.function(lambda images, centres: serving([images, centres]), reduce_retracing=True,
                        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8),
                                         tf.TensorSpec([None, None], tf.int32)])
    return lambda images, centres: infer(images, centres).numpy()


def compiled_inference(model, cfg):
    """model(preprocess(images)) as one graph over uint8 images of any size.

    Compiled once: a plain Keras call re-traces Python for every image and costs tens of ms."""
    import tensorflow as tf

    from kdetect.preprocess import preprocess

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)], reduce_retracing=True)
    def infer(images):
        return model(preprocess(images, cfg), training=False)

    return infer
