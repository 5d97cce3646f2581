"""Reading captchas with a classifier package: the detector Solver's API, without glyph boxes."""

from __future__ import annotations

import numpy as np

from kdetect.classifier.config import ClassifierConfig
from kdetect.classifier.decode import decode_probabilities
from kdetect.errors import ConfigError, LengthError
from kdetect.package import CONFIG, load_classifier_package, package_kind
from kdetect.readings import Reading
from kdetect.serving.reader import Reader, inference, packaged_networks


class ClassifierReader(Reader):
    """Reads answers of exactly config.length characters; glyphs have no boxes."""

    def _load_model(self) -> None:
        networks = packaged_networks(self.model_dir, self.backend)
        if networks is not None:
            if package_kind(self.model_dir) != "classifier":
                raise ConfigError(f"{self.model_dir} is not a classifier package; read it with kdetect.Solver")
            self.config = ClassifierConfig.load(self.model_dir / CONFIG)
            self._infer = networks[""]
            return
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
