import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REALVAL = Path(__file__).resolve().parents[2] / "shared" / "realval"


@pytest.fixture(scope="session", autouse=True)
def lite_cache(tmp_path_factory):
    """The Solver caches converted models (kdetect/lite.py); tests keep theirs out of ~/.cache."""
    old = os.environ.get("KDETECT_CACHE")
    os.environ["KDETECT_CACHE"] = str(tmp_path_factory.mktemp("lite-cache"))
    yield Path(os.environ["KDETECT_CACHE"])
    if old is None:
        del os.environ["KDETECT_CACHE"]
    else:
        os.environ["KDETECT_CACHE"] = old


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
