"""A model package: a folder with the weights, the resolved config as JSON, and a model card.

    detector.weights.h5   Keras weights of build_detector(config)
    config.json           ModelConfig: input size, charset, anchors, strides, thresholds
    training.json         how it was trained (data, seed, steps, measured accuracy)
    MODEL_CARD.md         the same for people
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from kdetect.errors import ConfigError
from kdetect.yolo.config import ModelConfig

WEIGHTS = "detector.weights.h5"
CONFIG = "config.json"
TRAINING = "training.json"
CARD = "MODEL_CARD.md"


def default_model_dir() -> Path:
    return Path(__file__).resolve().parent / "models" / "default"


def save_package(out_dir: str | Path, detector, cfg: ModelConfig, training: dict, card: str) -> Path:
    """Write the package to a temporary folder beside out_dir, then swap it in whole."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    detector.save_weights(str(tmp / WEIGHTS))
    (tmp / CONFIG).write_text(cfg.to_json())
    (tmp / TRAINING).write_text(json.dumps(training, indent=2) + "\n")
    (tmp / CARD).write_text(card)
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


def load_package(model_dir: str | Path):
    """-> (detector keras.Model with weights loaded, ModelConfig)."""
    from kdetect.yolo.model import build_detector

    model_dir = Path(model_dir)
    if not (model_dir / CONFIG).is_file() or not (model_dir / WEIGHTS).is_file():
        raise ConfigError(f"{model_dir} is not a kdetect model package (needs {CONFIG} and {WEIGHTS}); "
                          "train one with `kdetect train` or leave --model out to use the default")
    cfg = ModelConfig.load(model_dir / CONFIG)
    detector = build_detector(cfg)
    try:
        detector.load_weights(str(model_dir / WEIGHTS))
    except (ValueError, OSError) as err:
        raise ConfigError(f"{model_dir / WEIGHTS} does not fit the network described by {model_dir / CONFIG}: {err}") from None
    return detector, cfg
