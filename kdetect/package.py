"""A model package: a folder with the network, the resolved config as JSON, and a model card.

    detector.weights.h5   Keras weights of build_detector(config)      (kind "detector")
    classifier.keras      the whole Keras classifier, see kdetect/baseline  (kind "classifier")
    config.json           the model config; its "kind" says which of the two (none: a detector)
    training.json         how it was trained (data, seed, steps, measured accuracy)
    MODEL_CARD.md         the same for people
    glyphs.weights.h5     optional, a detector's second stage (kdetect/glyphs): the glyph reader
    glyphs.json           its config
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from kdetect.configio import check_input_size, read_json
from kdetect.errors import ConfigError
from kdetect.fsutil import check_replaceable, replace_dir, staging_dir
from kdetect.yolo.config import ModelConfig

WEIGHTS = "detector.weights.h5"
CONFIG = "config.json"
TRAINING = "training.json"
CARD = "MODEL_CARD.md"
GLYPH_WEIGHTS = "glyphs.weights.h5"
GLYPH_CONFIG = "glyphs.json"
KINDS = ("detector", "classifier")


def default_model_dir() -> Path:
    return Path(__file__).resolve().parent / "models" / "default"


def write_package(out_dir: str | Path, config_json: str, training: dict, card: str,
                  write_model: Callable[[Path], None], force: bool = False) -> Path:
    """Write a package to a temporary folder beside out_dir, then swap it in whole, so a crash
    never leaves half a package; write_model(folder) writes the network's file(s) into it. An
    out_dir holding what kdetect did not write is refused unless force (fsutil.replace_dir)."""
    out = Path(out_dir)
    check_replaceable(out, force)
    tmp = staging_dir(out)
    write_model(tmp)
    (tmp / CONFIG).write_text(config_json)
    (tmp / TRAINING).write_text(json.dumps(training, indent=2) + "\n")
    (tmp / CARD).write_text(card)
    replace_dir(tmp, out, force)
    return out


def save_package(out_dir: str | Path, detector, cfg: ModelConfig, training: dict, card: str,
                 force: bool = False, extra: Callable[[Path], None] | None = None) -> Path:
    """A detector package; extra(folder), if given, writes more of it (a glyph reader, see glyph_writer)."""

    def write_model(folder: Path) -> None:
        detector.save_weights(str(folder / WEIGHTS))
        if extra is not None:
            extra(folder)

    return write_package(out_dir, cfg.to_json(), training, card, write_model, force)


def glyph_writer(model_dir: str | Path | None, transform: Callable | None = None) -> Callable[[Path], None] | None:
    """What writes model_dir's glyph reader (after transform(reader), if given) into another
    package's folder, so the second stage travels with a detector that is continued, compacted or
    averaged; None where model_dir has none."""
    glyphs = load_glyph_reader(model_dir) if model_dir else None
    if glyphs is None:
        return None
    reader, gcfg = glyphs
    if transform is not None:
        transform(reader)

    def write(folder: Path) -> None:
        reader.save_weights(str(folder / GLYPH_WEIGHTS))
        (folder / GLYPH_CONFIG).write_text(gcfg.to_json())

    return write


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


def attach_glyph_reader(detector_dir: str | Path, weights: str | Path, glyph_config_json: str, summary: dict,
                        out_dir: str | Path, force: bool = False) -> Path:
    """A two-stage package in out_dir: the detector package's network, config and record, with a
    glyph reader (its weights file and config) beside them."""
    detector_dir = Path(detector_dir)
    if package_kind(detector_dir) != "detector":
        raise ConfigError(f"{detector_dir} is not a detector package: a glyph reader reads a detector's glyphs")

    def write_model(folder: Path) -> None:
        shutil.copyfile(detector_dir / WEIGHTS, folder / WEIGHTS)
        shutil.copyfile(weights, folder / GLYPH_WEIGHTS)
        (folder / GLYPH_CONFIG).write_text(glyph_config_json)

    training = {**(read_training(detector_dir) or {}), "glyph_reader": summary}
    card = (detector_dir / CARD).read_text() if (detector_dir / CARD).is_file() else "# kdetect detector\n\n"
    card += (f"- Second stage (kdetect/glyphs): a glyph reader trained on {summary.get('train_images', '?'):,} "
             f"synthetic captchas ({summary.get('train_data')}) names each glyph from a crop around it and "
             f"drops doubled boxes; held-out crop accuracy {summary.get('val_crop_accuracy', float('nan')):.4f}.\n")
    return write_package(out_dir, (detector_dir / CONFIG).read_text(), training, card, write_model, force)


def load_glyph_reader(model_dir: str | Path):
    """-> (glyph reader keras.Model, GlyphConfig) of a detector package with a second stage, else None."""
    from kdetect.glyphs.config import GlyphConfig
    from kdetect.glyphs.model import build_glyph_reader

    model_dir = Path(model_dir)
    if not (model_dir / GLYPH_CONFIG).is_file():
        return None
    gcfg = GlyphConfig.load(model_dir / GLYPH_CONFIG)
    try:
        check_input_size(gcfg.input_height, gcfg.input_width, "the glyph reader's")
    except ConfigError as err:
        raise ConfigError(f"{model_dir / GLYPH_CONFIG}: {err}") from None
    reader = build_glyph_reader(gcfg)
    load_weights(reader, model_dir / GLYPH_WEIGHTS, f"the glyph reader {model_dir / GLYPH_CONFIG} describes")
    return reader, gcfg


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
