"""A package's network as a TensorFlow Lite model, the Solver's default way to run it on a CPU.

Why: for the small batches `solve` sees, a TF graph call spends most of its time in the
runtime, not in the convolutions (8.6 ms for one 160x60 captcha with the shipped detector on
the 2-core machine); the TFLite interpreter with its XNNPACK kernels runs the same network in
3.0 ms and a batch twice as fast. The converted graph starts from uint8 pixels and holds
kdetect.preprocess.preprocess, so the one preprocessing function is still the only one.

Every package kdetect writes carries its conversion (model.tflite, glyphs.tflite and lite.json,
which records each file's sha256 and a digest of the network files it was converted from), so
reading needs no TensorFlow: the plain install runs them with ai-edge-litert. A package without
them, or whose weights changed since, is converted on first use (TensorFlow, the train extra)
and the result cached on disk under a key of the package's files and the TF version. Each cache
entry's sha256 is kept beside it and checked on every load; a damaged entry is converted again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdetect.errors import ConfigError
from kdetect.extras import TRAIN, require
from kdetect.package import (CLASSIFIER_MODEL, CONFIG, GLYPH_CONFIG, GLYPH_WEIGHTS, LITE_FILES, LITE_MANIFEST, WEIGHTS,
                             package_kind)

# Bump when the converted graph changes, so caches made by older kdetect versions are not used.
FORMAT = 1
# Files whose bytes fix the converted network (the card and training record do not).
NETWORK_FILES = (CONFIG, WEIGHTS, CLASSIFIER_MODEL, GLYPH_CONFIG, GLYPH_WEIGHTS)


def cache_dir() -> Path:
    """$KDETECT_CACHE, else $XDG_CACHE_HOME/kdetect, else ~/.cache/kdetect."""
    if os.environ.get("KDETECT_CACHE"):
        return Path(os.environ["KDETECT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kdetect"


def package_key(model_dir: str | Path) -> str:
    """A digest of what the conversion depends on: the package's network files, TF, FORMAT."""
    import tensorflow as tf

    return _network_digest(model_dir, f"kdetect-lite {FORMAT} tf {tf.__version__}")[:32]


def network_digest(model_dir: str | Path) -> str:
    """A digest of the package's network files alone: what a packaged conversion must match."""
    return _network_digest(model_dir, f"kdetect-lite {FORMAT}")


def _network_digest(model_dir: str | Path, prefix: str) -> str:
    digest = hashlib.sha256(prefix.encode())
    for name in NETWORK_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            digest.update(name.encode())
            # In pieces: a package's weights are read only once they are known to fit the network,
            # but nothing here needs them whole.
            with path.open("rb") as f:
                for piece in iter(lambda: f.read(1 << 20), b""):
                    digest.update(piece)
    return digest.hexdigest()


def convert(model, cfg) -> bytes:
    """model(preprocess(uint8 images [B, H, W, 3] of any size)) as a TFLite flatbuffer."""
    from kdetect.preprocess import with_preprocessing

    return convert_serving(with_preprocessing(model, cfg, "uint8"))


def convert_serving(serving) -> bytes:
    """A Keras serving graph (uint8 images in, preprocessing inside) as a TFLite flatbuffer."""
    import tensorflow as tf

    # Both ways write a SavedModel to a temporary folder and log it; keep it quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        if len(serving.inputs) == 1:
            return tf.lite.TFLiteConverter.from_keras_model(serving).convert()
        # Several inputs (the glyph reader's image and centres) keep their names this way.
        with tempfile.TemporaryDirectory(prefix="kdetect-lite-") as scratch:
            serving.export(scratch, verbose=False)
            return tf.lite.TFLiteConverter.from_saved_model(scratch).convert()


def cache_path(model_dir: str | Path, part: str = "") -> Path:
    """Where the conversion of a package's network (part "") or of another of its graphs goes."""
    return cache_dir() / f"{package_key(model_dir)}{part and '-' + part}.tflite"


def cached_conversion(model, cfg, model_dir: str | Path, part: str = "",
                      make: Callable[[], bytes] | None = None) -> bytes:
    """The package's TFLite model: from the cache, else converted now (by make(), default the
    detector's or classifier's conversion) and cached.

    Each cache entry is the .tflite file and, beside it, the sha256 of its bytes. An entry whose
    bytes do not match (a flipped bit, a torn write, a hand-edited file) is converted again: a
    damaged network would read wrong answers, and with confidence. A cache that cannot be
    written (read-only home, full disk) only costs the conversion on every load; it never stops
    reading."""
    path = cache_path(model_dir, part)
    cached = _read_verified(path)
    if cached is not None:
        return cached
    blob = make() if make else convert(model, cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The model first, its digest last: an entry is whole only once the digest matches it.
        _write_replacing(path, blob)
        _write_replacing(_digest_path(path), hashlib.sha256(blob).hexdigest().encode() + b"\n")
    except OSError as err:
        warnings.warn(f"kdetect could not cache the converted model in {path.parent} ({err}); set KDETECT_CACHE "
                      "to a writable folder to skip the conversion next time", stacklevel=2)
    return blob


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_verified(path: Path) -> bytes | None:
    """A cache entry's bytes where its recorded sha256 matches them, else None."""
    try:
        recorded = _digest_path(path).read_text().strip()
        blob = path.read_bytes()
    except (OSError, UnicodeDecodeError):
        return None
    return blob if hashlib.sha256(blob).hexdigest() == recorded else None


def _write_replacing(path: Path, data: bytes) -> None:
    """Write to a temporary name beside path, then rename over it: a reader sees the old file or
    the new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_threads() -> int:
    """$KDETECT_THREADS, else the cores this process may use; past a handful the small network
    gains nothing. (`kdetect serve --workers N` gives each worker its share of the cores.)"""
    given = os.environ.get("KDETECT_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, 8))


class LiteInference:
    """Runs a converted model: uint8 images [B, H, W, 3] (and any further inputs, in the order of
    their names) -> its outputs as NumPy arrays, in the order of the Keras model's outputs. Safe
    to call from several threads (one at a time runs)."""

    def __init__(self, blob: bytes, output_shapes: list[tuple[int | None, ...]], threads: int | None = None):
        self._interpreter = interpreter_class()(model_content=blob, num_threads=threads or default_threads())
        # Now rather than on the first read: the XNNPACK delegate is applied (and announced on
        # stderr) here, while a command line still holds its start-up logs back.
        self._interpreter.allocate_tensors()
        self._runner = self._interpreter.get_signature_runner()
        (signature,) = self._interpreter.get_signature_list().values()
        # "image" first, then the rest by name (the glyph reader's "centres").
        self._inputs = sorted(signature["inputs"], key=lambda name: (name != "image", name))
        self._lock = threading.Lock()
        self._order: list[str] | None = None
        self._output_shapes = [tuple(s) for s in output_shapes]

    def __call__(self, images: np.ndarray, *more: np.ndarray) -> list[np.ndarray]:
        arrays = [np.ascontiguousarray(images, np.uint8), *(np.ascontiguousarray(m) for m in more)]
        with self._lock:
            outputs = self._runner(**dict(zip(self._inputs, arrays)))
        if self._order is None:
            self._order = self._match(outputs)
        return [outputs[name] for name in self._order]

    def _match(self, outputs: dict[str, np.ndarray]) -> list[str]:
        # The flatbuffer names outputs output_0, output_1, ...; match them to the Keras outputs by
        # shape (a detector's scales differ in grid size) rather than trust the naming order.
        order = []
        for shape in self._output_shapes:
            names = [n for n, a in outputs.items() if _fits(a.shape[1:], shape) and n not in order]
            if not names:
                raise ConfigError(f"converted model has no output of shape {shape}: "
                                   f"{ {n: a.shape for n, a in outputs.items()} }")
            order.append(sorted(names)[0])
        return order


def interpreter_class():
    """ai-edge-litert's Interpreter (the plain install's runtime), else TensorFlow's own."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        require("tensorflow", TRAIN, "running a network without ai-edge-litert")
        import tensorflow as tf

        with warnings.catch_warnings():
            # TF 2.19 announces the interpreter's move to the separate ai-edge-litert package.
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter


def _fits(actual: tuple[int, ...], shape: tuple[int | None, ...]) -> bool:
    """Whether an output's shape is the Keras one, where None (a dynamic axis) fits any size."""
    return len(actual) == len(shape) and all(s is None or a == s for a, s in zip(actual, shape))


def output_shapes(model) -> list[tuple[int, ...]]:
    """A Keras model's output shapes without the batch axis, in its output order (LiteInference's
    second argument)."""
    outputs = model.outputs if isinstance(model.outputs, list) else [model.outputs]
    return [tuple(o.shape[1:]) for o in outputs]


def lite_inference(model, cfg, model_dir: str | Path, threads: int | None = None, part: str = "",
                   serving=None) -> LiteInference:
    """A LiteInference for a loaded package's network (converted, or taken from the cache); or,
    with part and serving, for another serving graph of the package (the glyph reader's)."""
    shapes = output_shapes(serving if serving is not None else model)
    make = (lambda: convert_serving(serving)) if serving is not None else None
    # A damaged cache entry never gets here: cached_conversion checks its digest.
    return LiteInference(cached_conversion(model, cfg, model_dir, part, make), shapes, threads)


def packaged_lite(model_dir: str | Path, threads: int | None = None) -> tuple[dict[str, LiteInference] | None, str]:
    """The package's own conversions, {part: LiteInference} ("" the detector or classifier,
    "glyphs" the glyph reader where it has one), and "" where they are whole and were converted
    from the network files the package holds now; else None and why not."""
    model_dir = Path(model_dir)
    path = model_dir / LITE_MANIFEST
    if not path.is_file():
        return None, f"it carries no {LITE_MANIFEST} (a package written before kdetect shipped TFLite files)"
    try:
        manifest = json.loads(path.read_text())
        parts, recorded = manifest["parts"], manifest["network"]
        if manifest.get("format") != FORMAT or not isinstance(parts, dict):
            return None, f"its {LITE_MANIFEST} is of another format"
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"its {LITE_MANIFEST} is not readable JSON of kdetect's"
    wanted = {""} | ({"glyphs"} if (model_dir / GLYPH_CONFIG).is_file() else set())
    if set(parts) != {_part_name(p) for p in wanted}:
        return None, f"its {LITE_MANIFEST} lists other networks than the package holds"
    if recorded != network_digest(model_dir):
        return None, "its network files changed after its TFLite files were written"
    inferences = {}
    for part in wanted:
        entry = parts[_part_name(part)]
        try:
            blob = (model_dir / LITE_FILES[part]).read_bytes()
            shapes = [tuple(s) for s in entry["outputs"]]
            intact = hashlib.sha256(blob).hexdigest() == entry["sha256"]
        except (OSError, KeyError, TypeError):
            intact = False
        if not intact:
            return None, f"its {LITE_FILES[part]} is missing or damaged (its sha256 is not the one recorded)"
        try:
            inferences[part] = LiteInference(blob, shapes, threads)
        except (ValueError, RuntimeError) as err:
            return None, f"its {LITE_FILES[part]} does not load ({str(err)[:200]})"
    return inferences, ""


def _part_name(part: str) -> str:
    return part or "model"


def write_lite_files(model_dir: str | Path) -> None:
    """Convert a package's networks and write them into it with their manifest (lite.json last:
    the files count only once it names them). Needs TensorFlow."""
    model_dir = Path(model_dir)
    from kdetect.package import load_any_package, load_glyph_reader

    network, cfg = load_any_package(model_dir)
    parts = {"": (network, None)}
    if package_kind(model_dir) == "detector" and (glyphs := load_glyph_reader(model_dir)) is not None:
        from kdetect.glyphs.model import serving_glyph_reader

        parts["glyphs"] = (None, serving_glyph_reader(*glyphs, "uint8"))
    manifest = {"format": FORMAT, "network": network_digest(model_dir), "parts": {}}
    for part, (model, serving) in parts.items():
        make = (lambda s=serving: convert_serving(s)) if serving is not None else None
        blob = cached_conversion(network, cfg, model_dir, part, make)
        _write_replacing(model_dir / LITE_FILES[part], blob)
        (model_dir / LITE_FILES[part]).chmod(0o644)  # mkstemp's 0600 would hide it from other users
        shapes = output_shapes(serving if serving is not None else network)
        manifest["parts"][_part_name(part)] = {"file": LITE_FILES[part], "sha256": hashlib.sha256(blob).hexdigest(),
                                               "outputs": [list(s) for s in shapes]}
    _write_replacing(model_dir / LITE_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    (model_dir / LITE_MANIFEST).chmod(0o644)


def no_conversion_error(model_dir: str | Path, why: str) -> ConfigError:
    """What reading a package says when it cannot run its TFLite files and cannot convert."""
    return ConfigError(f"{model_dir} cannot be read with TFLite alone: {why}. Install the train extra "
                       f"(pip install \"kdetect[{TRAIN}]\"), which converts it on first use, or write its "
                       "TFLite files again with a kdetect that has it (kdetect compact)")
