"""`solve(image) -> str` and the Solver that keeps a model loaded, whichever kind its package is."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from kdetect.images import ImageLike
from kdetect.package import default_model_dir, package_kind
from kdetect.readings import Reading
from kdetect.serving.reader import Reader, check_options


def open_reader(model_dir: str | Path, symbols: str | None = None, backend: str = "lite",
                guess_alphabet: bool = True, length: int | None = None) -> Reader:
    """The reader for a package's kind (see kdetect/package.py); nothing is loaded yet."""
    if package_kind(model_dir) == "classifier":
        from kdetect.serving.classifier_reader import ClassifierReader

        return ClassifierReader(model_dir, symbols, backend, length=length)
    from kdetect.serving.detector_reader import DetectorReader

    return DetectorReader(model_dir, symbols, backend, guess_alphabet, length)


class Solver:
    """Reads captchas with one model package, detector or classifier baseline, loaded on first
    use and kept. Without model_dir, the shipped default model. It wraps the reader of the
    package's kind, chosen when the package is first read.

    backend "lite" (default) runs the network with TensorFlow Lite, converted on first use and
    cached (kdetect/serving/lite.py); "tf" runs it as a TensorFlow graph. Both read the same answers.

    symbols: the characters the captchas are known to use (a site's allowed_symbols). Without
    them a detector that knows its training alphabets reads each captcha with the one its glyphs
    point to (a Gnuboard "1" beside five digits is a 1, not an l); guess_alphabet=False turns
    that off and lets every character win on its own.

    length: the one answer length the site uses, if known (Gnuboard's is 6): the detector then
    reads exactly that many glyphs where it can, dropping a doubled one or taking back a faint
    one. A fine-tuned package may carry its site's length; plain `solve` assumes none."""

    def __init__(self, model_dir: str | Path | None = None, symbols: str | None = None, backend: str = "lite",
                 guess_alphabet: bool = True, length: int | None = None):
        # Checked now, not on the first read: a wrong option is the caller's mistake, not the package's.
        check_options(backend, length)
        self.model_dir = Path(model_dir) if model_dir else default_model_dir()
        self.symbols, self.backend, self.guess_alphabet, self.length = symbols, backend, guess_alphabet, length
        self.reader: Reader | None = None  # the package kind's reader, once the package is read
        self._lock = threading.Lock()

    @property
    def config(self):
        """The package's model config (a detector's ModelConfig or a ClassifierConfig); loads the package."""
        return self.load().config

    def load(self) -> Reader:
        """Read the package and load its network now (otherwise the first read does); -> its reader."""
        with self._lock:
            if self.reader is None:
                reader = open_reader(self.model_dir, self.symbols, self.backend, self.guess_alphabet, self.length)
                reader.load()
                self.reader = reader
        return self.reader

    def check_length(self, length: int | None) -> None:
        """Raise LengthError if this model cannot read answers of `length` characters."""
        self.load().check_length(length)

    def read(self, image: ImageLike, length: int | None = None) -> Reading:
        """The detailed answer for one image: text, confidence, and each glyph's char, score and box."""
        return self.load().read(image, length=length)

    def read_batch(self, images: Iterable[ImageLike], batch_size: int = 64,
                   length: int | None = None) -> list[Reading]:
        """Readings for many images; same-sized images run through the network together."""
        return self.load().read_batch(images, batch_size=batch_size, length=length)

    def solve(self, image: ImageLike, length: int | None = None) -> str:
        return self.read(image, length=length).text


_default: Solver | None = None
_default_lock = threading.Lock()


def solve(image: ImageLike) -> str:
    """The answer of one captcha, read with the shipped default model."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Solver()
    return _default.solve(image)
