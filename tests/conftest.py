import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REALVAL = Path(__file__).resolve().parents[2] / "shared" / "realval"


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
