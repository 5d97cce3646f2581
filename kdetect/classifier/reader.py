"""Reading captchas with a classifier package: the detector Solver's API, without glyph boxes."""

from __future__ import annotations

import numpy as np

from kdetect.errors import LengthError
from kdetect.package import load_classifier_package
from kdetect.readings import Glyph, Reading, symbol_mask
from kdetect.serving.reader import Reader, inference


def decode_probabilities(probs: np.ndarray, charset: str, symbols: str | None = None) -> Reading:
    """One image's probabilities [length, classes] -> the most likely allowed char at each position."""
    probs = probs * symbol_mask(charset, symbols)
    ids, scores = probs.argmax(-1), probs.max(-1)
    glyphs = tuple(Glyph(charset[i], float(s)) for i, s in zip(ids, scores))
    return Reading("".join(g.char for g in glyphs), float(np.prod(scores)), glyphs)


class ClassifierReader(Reader):
    """Reads answers of exactly config.length characters; glyphs have no boxes."""

    def _load_model(self) -> None:
        classifier, self.config = load_classifier_package(self.model_dir)
        self._infer = inference(classifier, self.config, self.model_dir, self.backend)

    def _read_arrays(self, images: np.ndarray, size: tuple[int, int], length: int | None = None) -> list[Reading]:
        return [decode_probabilities(p, self.config.charset, self.symbols) for p in self._infer(images)[0]]

    def check_length(self, length: int | None) -> None:
        if length is not None and length != self.config.length:
            n = self.config.length
            raise LengthError(f"this baseline reads answers of exactly {n} characters; it cannot read {length}-"
                              f"character answers. Read them with the detector (kdetect.Solver() or --model "
                              f"left out), which reads any length, or train a classifier with \"length\": {length}")
