"""Compacting a package: folded batch norm computes the same network; snapped weights sit on the uint8 grid."""

import subprocess
import sys

import numpy as np
import pytest

from kdetect.detector.config import ModelConfig
from kdetect.detector.model import build_detector
from kdetect.errors import ConfigError
from kdetect.package import TRAINING, load_package, read_training
from kdetect.serving.export import converter_installed
from kdetect.training.compact import compact_package, fold_batch_norm, snap_weights, uint8_grid
from kdetect.training.packaging import save_package


def trained_looking_detector(seed: int = 0):
    """A tiny detector whose batch norms have non-trivial statistics, as after training."""
    cfg = ModelConfig(width_multiplier=0.125)
    detector = build_detector(cfg)
    rng = np.random.default_rng(seed)
    for layer in detector.layers:
        if layer.name.endswith("_bn"):
            n = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.2, 2.0, n)])
    return detector, cfg


def test_folding_keeps_the_outputs():
    detector, cfg = trained_looking_detector()
    folded, folded_cfg = fold_batch_norm(detector, cfg)
    assert not folded_cfg.batch_norm
    assert not any(layer.name.endswith("_bn") for layer in folded.layers)
    images = np.random.default_rng(1).random((2, cfg.input_height, cfg.input_width, 3), np.float32)
    for a, b in zip(detector(images), folded(images)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-4, rtol=1e-4)


def test_grid_has_256_levels_keeps_zero_and_is_idempotent():
    w = np.random.default_rng(2).normal(0, 1, 5000).astype(np.float32)
    w[17] = 0.0
    g = uint8_grid(w)
    assert len(np.unique(g)) <= 256
    assert g[17] == 0.0
    assert np.abs(g - w).max() <= (w.max() - w.min()) / 255
    np.testing.assert_array_equal(uint8_grid(g), g)
    positive = np.linspace(1.0, 3.0, 1000, dtype=np.float32)  # 0 outside the range: no nudge
    assert uint8_grid(positive).min() == pytest.approx(1.0) and uint8_grid(positive).max() == pytest.approx(3.0)


@pytest.mark.slow  # a TF.js conversion or several packages built: ~10 s each
@pytest.mark.skipif(not converter_installed(), reason="tensorflowjs is not installed (the export extra)")
def test_grid_matches_the_tfjs_quantiser(tmp_path):
    # In a fresh interpreter: tensorflowjs's imports misbehave under pytest (they look for IPython).
    grids = np.stack([uint8_grid(np.random.default_rng(s).normal(s - 2, 1, (3, 3, 8, 16)).astype(np.float32))
                      for s in range(5)])
    np.save(tmp_path / "g.npy", grids)
    script = ("import sys, numpy as np; from tensorflowjs.quantization import quantize_weights, dequantize_weights; "
              "g = np.load(sys.argv[1]); "
              "np.save(sys.argv[2], np.stack([dequantize_weights(*quantize_weights(x, np.uint8)) for x in g]))")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "g.npy"), str(tmp_path / "back.npy")], check=True,
                   capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "back.npy"), grids, rtol=1e-6, atol=1e-7)


def test_compact_package_reads_nearly_as_before(tmp_path):
    detector, cfg = trained_looking_detector(3)
    save_package(tmp_path / "src", detector, cfg, {"note": "test"}, "# test\n")
    compact_package(tmp_path / "src", tmp_path / "out")
    compacted, ccfg = load_package(tmp_path / "out")
    assert read_training(tmp_path / "out") == {"note": "test", "compacted_from": str(tmp_path / "src")}
    assert not ccfg.batch_norm and ccfg.anchors == cfg.anchors
    for w in compacted.get_weights():
        np.testing.assert_allclose(uint8_grid(w), w, rtol=1e-6)  # float rounding only
    images = np.random.default_rng(4).random((2, cfg.input_height, cfg.input_width, 3), np.float32)
    for a, b in zip(detector(images), compacted(images)):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).mean() < 0.05 * np.abs(a).mean()


def test_snapping_twice_changes_nothing():
    detector, cfg = trained_looking_detector(5)
    folded, _ = fold_batch_norm(detector, cfg)
    snap_weights(folded)
    once = [w.copy() for w in folded.get_weights()]
    snap_weights(folded)
    for a, b in zip(once, folded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_damaged_training_record_is_named(tmp_path):
    detector, cfg = trained_looking_detector(6)
    save_package(tmp_path / "src", detector, cfg, {"note": "test"}, "# test\n")
    (tmp_path / "src" / TRAINING).write_text("{not json")
    with pytest.raises(ConfigError, match="training.json"):
        compact_package(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "src" / TRAINING).unlink()
    assert read_training(tmp_path / "src") is None
