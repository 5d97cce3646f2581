"""The classifier's model package (see kdetect/package.py for the layout shared with the detector).

The whole network is saved as `classifier.keras`, uncompiled: the package needs no kdetect code
to load (keras.saving.load_model(path) alone) and carries no optimizer state. kdetect itself
reads only the weights from it, into the network its config.json describes.
"""

from __future__ import annotations

from pathlib import Path

from kdetect.baseline.config import ClassifierConfig
from kdetect.errors import ConfigError
from kdetect.package import CONFIG, package_kind, write_package

MODEL = "classifier.keras"


def save_classifier_package(out_dir: str | Path, weights_path: str | Path, cfg: ClassifierConfig, training: dict,
                            card: str) -> Path:
    """A package of build_classifier(cfg) with the weights of weights_path (a .weights.h5 file)."""
    from kdetect.baseline.model import build_classifier

    # A fresh model, never compiled: the saved file holds no optimizer, loss or metric to resolve.
    classifier = build_classifier(cfg)
    classifier.load_weights(str(weights_path))
    return write_package(out_dir, cfg.to_json(), training, card, lambda folder: classifier.save(folder / MODEL))


def load_classifier_package(model_dir: str | Path):
    """-> (classifier keras.Model, ClassifierConfig). The network is built from the validated
    config.json by build_classifier and only the weights are read from classifier.keras: the
    architecture that archive describes is never built, so a crafted one runs nothing."""
    import dataclasses

    from kdetect.baseline.model import build_classifier
    from kdetect.package import load_weights

    model_dir = Path(model_dir)
    if package_kind(model_dir) != "classifier" or not (model_dir / MODEL).is_file():
        raise ConfigError(f"{model_dir} is not a classifier package (needs {CONFIG} of kind \"classifier\" and "
                          f"{MODEL}); train one with `kdetect train-classifier`")
    cfg = ClassifierConfig.load(model_dir / CONFIG)
    # The package's own weights replace any pretrained ones: nothing is downloaded to load it.
    classifier = build_classifier(dataclasses.replace(cfg, weights=None))
    load_weights(classifier, model_dir / MODEL, f"the classifier described by {model_dir / CONFIG}")
    return classifier, cfg
