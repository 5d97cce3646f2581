"""Export: the SavedModel (preprocessing inside) reads exactly as the Solver does; TF.js when installed."""

import json
import math

import numpy as np
import pytest

from kdetect.detector.config import ModelConfig
from kdetect.detector.decode import decode_batch
from kdetect.detector.model import build_detector
from kdetect.serving.export import converter_installed, export_saved_model, export_tfjs, exported_size, metadata
from kdetect.serving.solver import Solver
from kdetect.training.packaging import save_package


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(1)
    cfg = ModelConfig(width_multiplier=0.125, score_threshold=0.0005)
    return save_package(tmp_path_factory.mktemp("pkg") / "model", build_detector(cfg), cfg, {}, "test\n")


def test_saved_model_reads_like_the_solver(package, tmp_path):
    import tensorflow as tf

    image = np.random.default_rng(0).integers(0, 256, (60, 160, 3)).astype(np.uint8)
    saved = tf.saved_model.load(str(export_saved_model(package, tmp_path / "saved")))
    outputs = saved.serve(tf.constant(image[None].astype(np.float32)))
    cfg = ModelConfig.load(package / "config.json")
    exported = decode_batch([np.asarray(o) for o in outputs], cfg, [(160, 60)])[0]
    assert exported.text == Solver(package).read(image).text and exported.text


def test_metadata_carries_the_decoding_config(package):
    meta = metadata(package)
    assert meta["kind"] == "detector" and meta["format"] == "kdetect-tfjs-1"
    assert meta["charset"] == ModelConfig().charset and len(meta["anchors"]) == 6 and meta["strides"] == [8, 16]


@pytest.mark.slow  # a TF.js conversion or several packages built: ~10 s each
@pytest.mark.skipif(not converter_installed(), reason="tensorflowjs is not installed")
def test_tfjs_export_writes_a_graph_model(package, tmp_path):
    out = export_tfjs(package, tmp_path / "web-model", quantize="float16")
    assert json.loads((out / "model.json").read_text())["format"] == "graph-model"
    assert json.loads((out / "metadata.json").read_text())["quantize"] == "float16"
    # What a browser downloads: model.json and shards of 2 bytes per float weight.
    manifest = json.loads((out / "model.json").read_text())["weightsManifest"]
    weights = [w for group in manifest for w in group["weights"]]
    assert all(w.get("quantization", {}).get("dtype") == "float16" for w in weights if w["dtype"] == "float32")
    shards = sum((out / path).stat().st_size for group in manifest for path in group["paths"])
    assert shards == sum(math.prod(w["shape"]) * (2 if "quantization" in w else 4) for w in weights)
    assert exported_size(out) == shards + (out / "model.json").stat().st_size
