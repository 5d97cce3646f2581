"""`solve(image) -> str` and the Solver that keeps a model loaded, whichever kind its package is."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from kdetect.images import ImageLike
from kdetect.package import default_model_dir, load_package, package_kind
from kdetect.reader import Reader, inference
from kdetect.yolo.decode import Reading, decode_batch


class DetectorReader(Reader):
    """The YOLO detector: reads answers of any length, with a box per glyph."""

    def _load_model(self) -> None:
        detector, self.config = load_package(self.model_dir)
        self._infer = inference(detector, self.config, self.model_dir, self.backend)

    def _read_arrays(self, images: np.ndarray, size: tuple[int, int]) -> list[Reading]:
        return decode_batch(self._infer(images), self.config, [size] * len(images), self.symbols,
                            self.guess_alphabet)


def open_reader(model_dir: str | Path, symbols: str | None = None, backend: str = "lite",
                guess_alphabet: bool = True) -> Reader:
    """The reader for a package's kind (see kdetect/package.py); nothing is loaded yet."""
    if package_kind(model_dir) == "classifier":
        from kdetect.baseline.reader import ClassifierReader

        return ClassifierReader(model_dir, symbols, backend)
    return DetectorReader(model_dir, symbols, backend, guess_alphabet)


class Solver(Reader):
    """Reads captchas with one model package, detector or classifier baseline, loaded on first
    use and kept. Without model_dir, the shipped default model.

    backend "lite" (default) runs the network with TensorFlow Lite, converted on first use and
    cached (kdetect/lite.py); "tf" runs it as a TensorFlow graph. Both read the same answers.

    symbols: the characters the captchas are known to use (a site's allowed_symbols). Without
    them a detector that knows its training alphabets reads each captcha with the one its glyphs
    point to (a Gnuboard "1" beside five digits is a 1, not an l); guess_alphabet=False turns
    that off and lets every character win on its own."""

    def __init__(self, model_dir: str | Path | None = None, symbols: str | None = None, backend: str = "lite",
                 guess_alphabet: bool = True):
        super().__init__(model_dir if model_dir else default_model_dir(), symbols, backend, guess_alphabet)
        self.reader: Reader | None = None

    def _load_model(self) -> None:
        reader = open_reader(self.model_dir, self.symbols, self.backend, self.guess_alphabet)
        reader.load()
        self.reader, self.config = reader, reader.config

    def _read_arrays(self, images: np.ndarray, size: tuple[int, int]) -> list[Reading]:
        return self.reader._read_arrays(images, size)

    def _check_symbols(self) -> None:
        pass  # the inner reader checked them

    def check_length(self, length: int | None) -> None:
        self.reader.check_length(length)


_default: Solver | None = None
_default_lock = threading.Lock()


def solve(image: ImageLike) -> str:
    """The answer of one captcha, read with the shipped default model."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Solver()
    return _default.solve(image)
