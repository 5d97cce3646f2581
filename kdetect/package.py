"""A model package: a folder with the network, the resolved config as JSON, and a model card.

    detector.weights.h5   Keras weights of build_detector(config)      (kind "detector")
    classifier.keras      the whole Keras classifier, see kdetect/baseline  (kind "classifier")
    config.json           the model config; its "kind" says which of the two (none: a detector)
    training.json         how it was trained (data, seed, steps, measured accuracy)
    MODEL_CARD.md         the same for people
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from kdetect.errors import ConfigError
from kdetect.fsutil import replace_dir
from kdetect.yolo.config import ModelConfig

WEIGHTS = "detector.weights.h5"
CONFIG = "config.json"
TRAINING = "training.json"
CARD = "MODEL_CARD.md"
KINDS = ("detector", "classifier")


def default_model_dir() -> Path:
    return Path(__file__).resolve().parent / "models" / "default"


def write_package(out_dir: str | Path, config_json: str, training: dict, card: str,
                  write_model: Callable[[Path], None]) -> Path:
    """Write a package to a temporary folder beside out_dir, then swap it in whole, so a crash
    never leaves half a package; write_model(folder) writes the network's file(s) into it."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    write_model(tmp)
    (tmp / CONFIG).write_text(config_json)
    (tmp / TRAINING).write_text(json.dumps(training, indent=2) + "\n")
    (tmp / CARD).write_text(card)
    replace_dir(tmp, out)
    return out


def save_package(out_dir: str | Path, detector, cfg: ModelConfig, training: dict, card: str) -> Path:
    """A detector package."""
    return write_package(out_dir, cfg.to_json(), training, card,
                         lambda folder: detector.save_weights(str(folder / WEIGHTS)))


def read_training(model_dir: str | Path) -> dict | None:
    """The package's training.json (how it was made), or None where the package has none."""
    path = Path(model_dir) / TRAINING
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}; retrain or re-copy the model package") from None


def package_kind(model_dir: str | Path) -> str:
    """"detector" or "classifier", from the package's config.json."""
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{model_dir} is not a kdetect model package (no {CONFIG}); "
                          "train one with `kdetect train` or leave --model out to use the default")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read model config {path}: {err}") from None
    kind = data.get("kind", "detector") if isinstance(data, dict) else None
    if kind not in KINDS:
        raise ConfigError(f"{path}: unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    return kind


def load_package(model_dir: str | Path):
    """-> (detector keras.Model with weights loaded, ModelConfig)."""
    from kdetect.yolo.model import build_detector

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
    try:
        detector.load_weights(str(model_dir / WEIGHTS))
    except (ValueError, OSError) as err:
        raise ConfigError(f"{model_dir / WEIGHTS} does not fit the network described by {model_dir / CONFIG}: {err}") from None
    return detector, cfg


def load_any_package(model_dir: str | Path):
    """-> (network, config) of a package of either kind (detector or classifier)."""
    if package_kind(model_dir) == "classifier":
        from kdetect.baseline.package import load_classifier_package

        return load_classifier_package(model_dir)
    return load_package(model_dir)


def run_line(package: str, t: dict) -> str:
    """A package's own training in one phrase: data, steps and held-out accuracy."""
    if "averaged_from" in t:
        return (f"{package}, the weight average of {len(t['averaged_from'])} packages (kdetect/soup.py), "
                f"held-out accuracy {t.get('val_string_accuracy', '?')}")
    images = t.get("train_images")
    # Records written before the total was kept have only the last session's count: say so.
    epochs = t.get("epochs_run", t.get("epochs_run_this_session", "?"))
    partial = " (its last session only)" if "epochs_run" not in t and "epochs_run_this_session" in t else ""
    # The preset names the distribution, the folder the exact data (a preset may be drawn with
    # other fonts: `kdetect generate --fonts`); give both where known.
    data = f"`{t.get('train_preset') or t.get('train_data', '?')}`"
    if t.get("train_preset") and t.get("train_data"):
        data += f" ({t['train_data']})"
    return (f"{package}: {f'{images:,}' if isinstance(images, int) else '?'} images of "
            f"{data} seed {t.get('train_seed', '?')}, {epochs} epochs of "
            f"{t.get('steps_per_epoch', '?')} steps x {t.get('batch_size', '?')}{partial}, seed {t.get('seed', '?')}, "
            f"held-out accuracy {t.get('val_string_accuracy', '?')}")


def alphabets_line(cfg: ModelConfig) -> str:
    """The model card's line on the alphabets the decoder chooses from (none: empty)."""
    if not cfg.alphabets:
        return ""
    shares = ", ".join(f"`{a}` x{cfg.alphabets.count(a)}" for a in dict.fromkeys(cfg.alphabets))
    return f"- Reads each captcha with the training alphabet its glyphs point to, of: {shares}.\n"


def lineage(summary: dict, depth: int = 0, shown: set[str] | None = None) -> str:
    """Card lines for every ancestor of a run, nearest first; an averaged ancestor lists each of
    its ingredients with their own ancestors, indented, down to the run trained from scratch.
    shown: averaged packages already expanded in this card; they are not listed twice (rounds of
    averaging share their ancestors, and the card would double with every round)."""
    shown = set() if shown is None else shown
    pad, lines, parent = "  " * depth, [], summary.get("init_from")
    while parent:
        t = parent.get("training") or {}
        lines.append(f"{pad}- Continued from {run_line(parent['package'], t)}.\n")
        if "averaged_from" in t:
            if parent["package"] in shown:
                lines.append(f"{pad}  - (its ingredients are listed above)\n")
            else:
                shown.add(parent["package"])
                lines.append(ingredient_lines(t["averaged_from"], depth + 1, shown))
            break
        parent = t.get("init_from")
    return "".join(lines)


def ingredient_lines(parts: list[dict], depth: int, shown: set[str] | None = None) -> str:
    """Card lines for the packages a soup averaged, each followed by its own lineage."""
    pad, shown = "  " * depth, set() if shown is None else shown
    return "".join(f"{pad}- {run_line(p['package'], p.get('training') or {})}.\n"
                   + lineage(p.get("training") or {}, depth + 1, shown) for p in parts)
