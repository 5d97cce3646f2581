"""Export a model package: SavedModel, a TF.js graph model with the metadata the browser needs,
or a TFLite model.

The exported graph takes raw RGB pixels (float32 0..255, any size) and runs the same preprocess()
that training and `solve` use, then the network. Box decoding and NMS stay outside the graph
(TF.js graph models handle neither Keras Lambda layers nor NMS ops well): web/decode.js
mirrors kdetect/yolo/decode.py, configured by metadata.json rather than by copied constants.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kdetect.errors import ConfigError, KdetectError
from kdetect.fsutil import replace_dir
from kdetect.package import CONFIG, load_any_package, package_kind

QUANTIZE_FLAGS = {None: [], "float16": ["--quantize_float16", "*"], "uint8": ["--quantize_uint8", "*"]}
METADATA = "metadata.json"


def serving_model(model_dir: str | Path):
    """raw RGB images [B, H, W, 3] float32 0..255 -> the network's outputs, preprocessing included."""
    from kdetect.yolo.preprocess import with_preprocessing

    network, cfg = load_any_package(model_dir)
    return with_preprocessing(network, cfg)


def metadata(model_dir: str | Path) -> dict:
    """What the JavaScript side needs to feed and decode the exported graph."""
    config = json.loads((Path(model_dir) / CONFIG).read_text())
    return {"format": "kdetect-tfjs-1", "kind": package_kind(model_dir), **config}


def converter_installed() -> bool:
    return importlib.util.find_spec("tensorflowjs") is not None


def export_saved_model(model_dir: str | Path, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    serving_model(model_dir).export(str(out), verbose=False)
    return out


def export_tfjs(model_dir: str | Path, out_dir: str | Path, quantize: str | None = None) -> Path:
    """model.json + weight shards + metadata.json in out_dir, replaced whole."""
    if quantize not in QUANTIZE_FLAGS:
        raise ConfigError(f"quantize must be one of float16, uint8 or none, not {quantize!r}")
    if not converter_installed():
        raise KdetectError("tensorflowjs is not installed; install it with pip install -e '.[export]' "
                           "(tensorflowjs 4.22.0 and ydf 0.12.0, see the README)")
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="kdetect-export-") as scratch:
        saved = export_saved_model(model_dir, Path(scratch) / "saved_model")
        staged = _stage(out)
        # As a module of this interpreter, so it works in a virtual environment that is not activated.
        cmd = [sys.executable, "-m", "tensorflowjs.converters.converter", "--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
               *QUANTIZE_FLAGS[quantize], str(saved), str(staged)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(staged, ignore_errors=True)
            raise KdetectError(f"tensorflowjs_converter failed: {proc.stderr.strip()[-2000:]}")
    return _publish(staged, out, metadata(model_dir) | {"quantize": quantize or "none"})


def export_tflite(model_dir: str | Path, out_dir: str | Path) -> Path:
    """model.tflite (uint8 RGB images [B, H, W, 3] of any size in, the raw head outputs out: the
    graph the Solver's "lite" backend runs) + metadata.json for decoding, in out_dir, replaced whole."""
    from kdetect.lite import convert

    network, cfg = load_any_package(model_dir)
    blob = convert(network, cfg)
    out = Path(out_dir)
    staged = _stage(out)
    (staged / "model.tflite").write_bytes(blob)
    meta = metadata(model_dir) | {"format": "kdetect-tflite-1", "input": "uint8 RGB [batch, height, width, 3]"}
    return _publish(staged, out, meta)


def _stage(out: Path) -> Path:
    """A fresh folder beside out to write an export into, so a failed export leaves out as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))


def _publish(staged: Path, out: Path, meta: dict) -> Path:
    """Add metadata.json to a staged export and put it in place of out, whole."""
    (staged / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    replace_dir(staged, out)
    return out


def exported_size(out_dir: str | Path) -> int:
    """Bytes of model.json and its weight shards (what a browser downloads)."""
    return sum(p.stat().st_size for p in Path(out_dir).iterdir() if p.name != METADATA)



