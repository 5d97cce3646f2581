"""`solve(image) -> str` and the Solver that keeps a model loaded, whichever kind its package is."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np

from kdetect.images import ImageLike
from kdetect.glyphs.decode import look_twice, refine
from kdetect.package import default_model_dir, load_glyph_reader, load_package, package_kind
from kdetect.reader import Reader, glyph_inference, inference
from kdetect.yolo.decode import Reading, decode_batch, proposal_batch, score_floor


class DetectorReader(Reader):
    """The YOLO detector: reads answers of any length, with a box per glyph; where the package
    has a glyph reader (kdetect/glyphs), that second stage keeps and names the glyphs."""

    def _load_model(self) -> None:
        detector, self.config = load_package(self.model_dir)
        self._infer = inference(detector, self.config, self.model_dir, self.backend)
        glyphs = load_glyph_reader(self.model_dir)
        self.glyph_config = glyphs[1] if glyphs else None
        if glyphs:
            self._read_glyphs = glyph_inference(*glyphs, self.model_dir, self.backend)
            self._proposing = dataclasses.replace(
                self.config, score_threshold=min(self.config.score_threshold, self.glyph_config.proposal_threshold))

    def _read_arrays(self, images: np.ndarray, size: tuple[int, int], length: int | None = None) -> list[Reading]:
        sizes = [size] * len(images)
        length = length if length is not None else self.config.answer_length
        outputs = self._infer(images)
        if self.glyph_config is None:
            return decode_batch(outputs, self.config, sizes, self.symbols, self.guess_alphabet, length)
        proposing = self._proposing
        if length is not None:
            proposing = dataclasses.replace(proposing, score_threshold=score_floor(proposing, length))
        found = proposal_batch(outputs, proposing, sizes)
        columns, probs, seconds = look_twice(images, found, sizes, self.glyph_config, self._read_glyphs, length)
        return [refine(p, pr, self.glyph_config, self.config.alphabets, self.symbols, self.guess_alphabet, length, dp,
                       cols, second)
                for (p, dp), pr, cols, second in zip(found, probs, columns, seconds)]


def open_reader(model_dir: str | Path, symbols: str | None = None, backend: str = "lite",
                guess_alphabet: bool = True, length: int | None = None) -> Reader:
    """The reader for a package's kind (see kdetect/package.py); nothing is loaded yet."""
    if package_kind(model_dir) == "classifier":
        from kdetect.baseline.reader import ClassifierReader

        return ClassifierReader(model_dir, symbols, backend, length=length)
    return DetectorReader(model_dir, symbols, backend, guess_alphabet, length)


class Solver(Reader):
    """Reads captchas with one model package, detector or classifier baseline, loaded on first
    use and kept. Without model_dir, the shipped default model.

    backend "lite" (default) runs the network with TensorFlow Lite, converted on first use and
    cached (kdetect/lite.py); "tf" runs it as a TensorFlow graph. Both read the same answers.

    symbols: the characters the captchas are known to use (a site's allowed_symbols). Without
    them a detector that knows its training alphabets reads each captcha with the one its glyphs
    point to (a Gnuboard "1" beside five digits is a 1, not an l); guess_alphabet=False turns
    that off and lets every character win on its own.

    length: the one answer length the site uses, if known (Gnuboard's is 6): the detector then
    reads exactly that many glyphs where it can, dropping a doubled one or taking back a faint
    one. A fine-tuned package may carry its site's length; plain `solve` assumes none."""

    def __init__(self, model_dir: str | Path | None = None, symbols: str | None = None, backend: str = "lite",
                 guess_alphabet: bool = True, length: int | None = None):
        super().__init__(model_dir if model_dir else default_model_dir(), symbols, backend, guess_alphabet, length)
        self.reader: Reader | None = None

    def _load_model(self) -> None:
        reader = open_reader(self.model_dir, self.symbols, self.backend, self.guess_alphabet, self.length)
        reader.load()
        self.reader, self.config = reader, reader.config

    def _read_arrays(self, images: np.ndarray, size: tuple[int, int], length: int | None = None) -> list[Reading]:
        return self.reader._read_arrays(images, size, length)

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
