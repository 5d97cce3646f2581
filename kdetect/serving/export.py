"""Export a model package: SavedModel, a TF.js graph model with the metadata the browser needs,
or a TFLite model.

The exported graph takes raw RGB pixels (float32 0..255, any size) and runs the same preprocess()
that training and `solve` use, then the network. Box decoding and NMS stay outside the graph
(TF.js graph models handle neither Keras Lambda layers nor NMS ops well): web/decode.js
mirrors kdetect/detector/decode.py, configured by metadata.json rather than by copied constants.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from kdetect.errors import ConfigError, KdetectError
from kdetect.fsutil import MARKER, staged_output
from kdetect.package import CONFIG, GLYPH_CONFIG, load_any_package, load_glyph_reader, package_kind

QUANTIZE_FLAGS = {None: [], "float16": ["--quantize_float16", "*"], "uint8": ["--quantize_uint8", "*"]}
METADATA = "metadata.json"


def serving_model(model_dir: str | Path):
    """raw RGB images [B, H, W, 3] float32 0..255 -> the network's outputs, preprocessing included."""
    from kdetect.preprocess import with_preprocessing

    network, cfg = load_any_package(model_dir)
    return with_preprocessing(network, cfg)


def metadata(model_dir: str | Path) -> dict:
    """What the JavaScript side needs to feed and decode the exported graph(s)."""
    config = json.loads((Path(model_dir) / CONFIG).read_text())
    meta = {"format": "kdetect-tfjs-1", "kind": package_kind(model_dir), **config}
    if (Path(model_dir) / GLYPH_CONFIG).is_file():
        meta["glyphs"] = json.loads((Path(model_dir) / GLYPH_CONFIG).read_text())
    return meta


def glyph_serving_model(model_dir: str | Path, dtype: str = "float32"):
    """The package's glyph reader as a served graph (images and crop centres in), or None."""
    from kdetect.glyphs.model import serving_glyph_reader

    glyphs = load_glyph_reader(model_dir)
    return serving_glyph_reader(*glyphs, dtype) if glyphs else None


def converter_installed() -> bool:
    return importlib.util.find_spec("tensorflowjs") is not None


def export_saved_model(model_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """A SavedModel taking raw RGB pixels of any size, in out_dir, replaced whole; a glyph
    reader's (pixels and crop centres in) goes to out_dir/glyphs."""
    out = Path(out_dir)
    with staged_output(out, force) as staged:
        serving_model(model_dir).export(str(staged), verbose=False)
        glyphs = glyph_serving_model(model_dir)
        if glyphs is not None:
            glyphs.export(str(staged / "glyphs"), verbose=False)
    return out


def export_tfjs(model_dir: str | Path, out_dir: str | Path, quantize: str | None = None, force: bool = False) -> Path:
    """model.json + weight shards + metadata.json in out_dir, replaced whole."""
    if quantize not in QUANTIZE_FLAGS:
        raise ConfigError(f"quantize must be one of float16, uint8 or none, not {quantize!r}")
    if not converter_installed():
        raise KdetectError("tensorflowjs is not installed; install it with pip install -e '.[export]' "
                           "(tensorflowjs 4.22.0 and ydf 0.12.0, see the README)")
    out = Path(out_dir)
    with staged_output(out, force) as staged, tempfile.TemporaryDirectory(prefix="kdetect-export-") as scratch:
        saved = export_saved_model(model_dir, Path(scratch) / "saved_model")
        _tfjs_convert(saved, staged, quantize)
        if (saved / "glyphs").is_dir():
            _tfjs_convert(saved / "glyphs", staged / "glyphs", quantize)
        write_metadata(staged, metadata(model_dir) | {"quantize": quantize or "none"})
    return out


def _tfjs_convert(saved: Path, out: Path, quantize: str | None) -> None:
    # As a module of this interpreter, so it works in a virtual environment that is not activated.
    cmd = [sys.executable, "-m", "tensorflowjs.converters.converter", "--input_format=tf_saved_model",
           "--output_format=tfjs_graph_model", *QUANTIZE_FLAGS[quantize], str(saved), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KdetectError(f"tensorflowjs_converter failed: {proc.stderr.strip()[-2000:]}")


def export_tflite(model_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """model.tflite (uint8 RGB images [B, H, W, 3] of any size in, the raw head outputs out: the
    graph the Solver's "lite" backend runs) + metadata.json for decoding, in out_dir, replaced whole;
    a glyph reader's graph (pixels and int32 crop centres [B, K] in) goes to glyphs.tflite."""
    from kdetect.serving.lite import convert, convert_serving

    out = Path(out_dir)
    with staged_output(out, force) as staged:
        network, cfg = load_any_package(model_dir)
        (staged / "model.tflite").write_bytes(convert(network, cfg))
        glyphs = glyph_serving_model(model_dir, "uint8")
        if glyphs is not None:
            (staged / "glyphs.tflite").write_bytes(convert_serving(glyphs))
        write_metadata(staged, metadata(model_dir) | {"format": "kdetect-tflite-1",
                                                      "input": "uint8 RGB [batch, height, width, 3]"})
    return out


def write_metadata(staged: Path, meta: dict) -> None:
    """An export's metadata.json: what decoding needs beside the graph."""
    (staged / METADATA).write_text(json.dumps(meta, indent=2) + "\n")


def exported_size(out_dir: str | Path) -> int:
    """Bytes of model.json and its weight shards, a glyph reader's included (what a browser downloads)."""
    return sum(p.stat().st_size for p in Path(out_dir).rglob("*") if p.is_file() and p.name not in (METADATA, MARKER))



