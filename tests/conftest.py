import json
import os
from pathlib import Path

import pytest

from kdetect.presets import realval_dir

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REALVAL = realval_dir()


def pytest_configure(config):
    # Keras turns TF tensors into arrays with np.array(tensor); under NumPy 2, TF 2.19's tensors
    # lack __array__'s copy keyword, and NumPy warns on every predict batch. Nothing of kdetect's.
    config.addinivalue_line("filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword"
                            ":DeprecationWarning")


@pytest.fixture(scope="session", autouse=True)
def lite_cache(tmp_path_factory):
    """The Solver caches converted models (kdetect/serving/lite.py); tests keep theirs out of ~/.cache."""
    cache = tmp_path_factory.mktemp("lite-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KDETECT_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def untrained_package(tmp_path_factory):
    """make(seed) -> an untrained detector package with a low score threshold, so it reads
    *something*: enough to compare input forms and backends."""

    def make(seed: int) -> Path:
        import keras

        from kdetect.detector.config import ModelConfig
        from kdetect.detector.model import build_detector
        from kdetect.training.packaging import save_package

        keras.utils.set_random_seed(seed)
        cfg = ModelConfig(width_multiplier=0.125, score_threshold=0.0005)
        return save_package(tmp_path_factory.mktemp("pkg") / "model", build_detector(cfg), cfg, {}, "test model\n")

    return make


@pytest.fixture
def make_config(tmp_path: Path):
    """Write a render config: a preset's options with overrides; returns its path."""
    from kdetect.data import renderer

    def make(preset: str = "gnuboard5", **overrides) -> Path:
        config = renderer.load_config(renderer.preset_path(preset))
        config.update(overrides)
        path = tmp_path / f"{preset}-{len(list(tmp_path.glob('*.json')))}.json"
        path.write_text(json.dumps(config))
        return path

    return make
