"""The classifier's model package (see kdetect/package.py for the layout shared with the detector).

The whole network is saved as `classifier.keras`, uncompiled: the package needs no kdetect code
to load (keras.saving.load_model(path) alone) and carries no optimizer state.
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
    """-> (classifier keras.Model, ClassifierConfig)."""
    import keras

    model_dir = Path(model_dir)
    if package_kind(model_dir) != "classifier" or not (model_dir / MODEL).is_file():
        raise ConfigError(f"{model_dir} is not a classifier package (needs {CONFIG} of kind \"classifier\" and "
                          f"{MODEL}); train one with `kdetect train-classifier`")
    cfg = ClassifierConfig.load(model_dir / CONFIG)
    try:
        classifier = keras.saving.load_model(model_dir / MODEL, compile=False)
    except (ValueError, OSError) as err:
        raise ConfigError(f"cannot load {model_dir / MODEL}: {err}") from None
    expected = (cfg.length, cfg.num_classes)
    if tuple(classifier.output_shape[1:]) != expected:
        raise ConfigError(f"{model_dir / MODEL} gives outputs {classifier.output_shape[1:]}, but {model_dir / CONFIG} "
                          f"describes {expected} (length, classes)")
    return classifier, cfg
