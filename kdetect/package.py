"""A model package, read: a folder with the network, the resolved config as JSON, and a model
card (kdetect/training/packaging.py writes them, each kind's trainer its card).

    detector.weights.h5   Keras weights of build_detector(config)      (kind "detector")
    classifier.keras      the whole Keras classifier, uncompiled (kdetect/classifier)  (kind "classifier")
    config.json           the model config; its "kind" says which of the two (none: a detector)
    training.json         how it was trained (data, seed, steps, measured accuracy)
    MODEL_CARD.md         the same for people
    glyphs.weights.h5     optional, a detector's second stage (kdetect/glyphs): the glyph reader
    glyphs.json           its config
    model.tflite          the network (preprocessing included) converted for TFLite, and the glyph
    glyphs.tflite         reader's: what reading runs, without TensorFlow (kdetect/serving/lite.py)
    lite.json             their sha256 and the digest of the network files they were converted from
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from kdetect.configio import read_json
from kdetect.detector.config import ModelConfig
from kdetect.errors import ConfigError

WEIGHTS = "detector.weights.h5"
CONFIG = "config.json"
TRAINING = "training.json"
CARD = "MODEL_CARD.md"
GLYPH_WEIGHTS = "glyphs.weights.h5"
GLYPH_CONFIG = "glyphs.json"
# Saved whole, uncompiled: it loads with keras.saving.load_model alone, without kdetect; kdetect
# itself reads only the weights from it.
CLASSIFIER_MODEL = "classifier.keras"
KINDS = ("detector", "classifier")
LITE_MANIFEST = "lite.json"
# The package's network ("") and its glyph reader ("glyphs"), converted.
LITE_FILES = {"": "model.tflite", "glyphs": "glyphs.tflite"}


def default_model_dir() -> Path:
    return Path(__file__).resolve().parent / "models" / "default"


def read_training(model_dir: str | Path) -> dict | None:
    """The package's training.json (how it was made), or None where the package has none."""
    path = Path(model_dir) / TRAINING
    if not path.is_file():
        return None
    try:
        return read_json(path, "training record")
    except ConfigError as err:
        raise ConfigError(f"{err}; retrain or re-copy the model package") from None


def package_kind(model_dir: str | Path) -> str:
    """"detector" or "classifier", from the package's config.json."""
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{model_dir} is not a kdetect model package (no {CONFIG}); "
                          "train one with `kdetect train` or leave --model out to use the default")
    data = read_json(path, "model config")
    kind = data.get("kind", "detector") if isinstance(data, dict) else None
    if kind not in KINDS:
        raise ConfigError(f"{path}: unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    return kind


def load_package(model_dir: str | Path):
    """-> (detector keras.Model with weights loaded, ModelConfig)."""
    from kdetect.detector.model import build_detector

    model_dir = Path(model_dir)
    kind = package_kind(model_dir) if (model_dir / CONFIG).is_file() else "detector"
    if kind != "detector":
        raise ConfigError(f"{model_dir} holds a {kind}, not a detector; read it with kdetect.Solver, "
                          "which takes either kind")
    if not (model_dir / CONFIG).is_file() or not (model_dir / WEIGHTS).is_file():
        raise ConfigError(f"{model_dir} is not a kdetect model package (needs {CONFIG} and {WEIGHTS}); "
                          "train one with `kdetect train` or leave --model out to use the default")
    cfg = ModelConfig.load(model_dir / CONFIG)
    detector = build_detector(cfg)
    load_weights(detector, model_dir / WEIGHTS, f"the network described by {model_dir / CONFIG}")
    return detector, cfg


def load_weights(network, path: Path, described: str) -> None:
    """Read a weights file into a network kdetect built itself: only numbers are read, never code
    or an architecture, and only as many as the network holds (check_weights)."""
    check_weights(path, network)
    try:
        network.load_weights(str(path))
    except Exception as err:  # noqa: BLE001 - h5py and Keras raise many kinds on a damaged file
        raise ConfigError(f"{path} does not fit {described} ({type(err).__name__}: {str(err)[:300]}); the "
                          "package is damaged or was made for another network: write it again") from None


def check_weights(path: Path, network) -> None:
    """Refuse a weights file (HDF5, or a .keras zip holding one) that is not one, or that would
    decode to far more numbers than the network has: a crafted file may declare gigabytes of
    compressed zeros, which Keras would read whole before finding that they do not fit."""
    import zipfile

    # Twice the network's float32 weights, and room for HDF5's own bookkeeping.
    budget = 8 * network.count_params() + (1 << 20)
    if not path.is_file():
        raise ConfigError(f"{path} is missing; the package is incomplete: write it again")
    if path.suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ConfigError(f"{path} is not a .keras archive (a zip file); the package is damaged: write it again")
        with zipfile.ZipFile(path) as archive:
            if sum(info.file_size for info in archive.infolist()) > budget:
                raise ConfigError(f"{path} unpacks to more than the network's {network.count_params():,} weights "
                                  "could fill; it is not this package's network")
            names = archive.namelist()
            if "model.weights.h5" not in names:
                raise ConfigError(f"{path} holds no model.weights.h5; the package is damaged: write it again")
            with tempfile.TemporaryDirectory(prefix="kdetect-weights-") as scratch:
                inner = Path(scratch) / "model.weights.h5"
                with archive.open("model.weights.h5") as src, inner.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                _check_hdf5(inner, budget, network, path)
        return
    _check_hdf5(path, budget, network, path)


def _check_hdf5(path: Path, budget: int, network, shown: Path) -> None:
    import h5py

    total = 0

    def add(name: str, item) -> None:
        nonlocal total
        # A training run's best weights carry the optimizer's state too (Adam: two slots a weight).
        if isinstance(item, h5py.Dataset) and not name.startswith("optimizer/"):
            total += int(item.size) * item.dtype.itemsize

    try:
        with h5py.File(path, "r") as f:
            f.visititems(add)
    except Exception as err:  # noqa: BLE001 - h5py raises many kinds on a file that is not HDF5
        raise ConfigError(f"{shown} is not a weights file (HDF5) ({type(err).__name__}: {str(err)[:200]}); "
                          "the package is damaged: write it again") from None
    if total > budget:
        raise ConfigError(f"{shown} holds {total:,} bytes of weights, far more than the network's "
                          f"{network.count_params():,} weights; it is not this package's network")


def load_glyph_reader(model_dir: str | Path):
    """-> (glyph reader keras.Model, GlyphConfig) of a detector package with a second stage, else None."""
    from kdetect.glyphs.config import GlyphConfig
    from kdetect.glyphs.model import build_glyph_reader

    model_dir = Path(model_dir)
    if not (model_dir / GLYPH_CONFIG).is_file():
        return None
    gcfg = GlyphConfig.load(model_dir / GLYPH_CONFIG)  # its validate() bounds the input size
    reader = build_glyph_reader(gcfg)
    load_weights(reader, model_dir / GLYPH_WEIGHTS, f"the glyph reader {model_dir / GLYPH_CONFIG} describes")
    return reader, gcfg


def load_any_package(model_dir: str | Path):
    """-> (network, config) of a package of either kind (detector or classifier)."""
    if package_kind(model_dir) == "classifier":
        return load_classifier_package(model_dir)
    return load_package(model_dir)


def load_classifier_package(model_dir: str | Path):
    """-> (classifier keras.Model, ClassifierConfig). The network is built from the validated
    config.json by build_classifier and only the weights are read from classifier.keras: the
    architecture that archive describes is never built, so a crafted one runs nothing."""
    from kdetect.classifier.config import ClassifierConfig
    from kdetect.classifier.model import build_classifier

    model_dir = Path(model_dir)
    if package_kind(model_dir) != "classifier" or not (model_dir / CLASSIFIER_MODEL).is_file():
        raise ConfigError(f"{model_dir} is not a classifier package (needs {CONFIG} of kind \"classifier\" and "
                          f"{CLASSIFIER_MODEL}); train one with `kdetect train-classifier`")
    cfg = ClassifierConfig.load(model_dir / CONFIG)
    # The package's own weights replace any pretrained ones: nothing is downloaded to load it.
    classifier = build_classifier(dataclasses.replace(cfg, weights=None))
    load_weights(classifier, model_dir / CLASSIFIER_MODEL, f"the classifier described by {model_dir / CONFIG}")
    return classifier, cfg
