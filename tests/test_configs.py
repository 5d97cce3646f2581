"""The configs kept in the repository still load: the shipped models' recipes (configs/train/) and
the runs tried and not shipped (configs/experiments/), whose options docs/experiments.md cites."""

from pathlib import Path

import pytest

from kdetect.configio import read_json
from kdetect.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted((CONFIGS / "train").glob("*.json")) + sorted((CONFIGS / "experiments").glob("*.json"))


def kinds():
    from kdetect.training.classifier import ClassifierTrainConfig
    from kdetect.training.detector import TrainConfig
    from kdetect.training.glyphs import GlyphTrainConfig

    return (TrainConfig, GlyphTrainConfig, ClassifierTrainConfig)


def loads_as(path: Path) -> list[str]:
    """The training configs `path` loads as; a render config (its `description` says what it
    draws) as the renderer reads it."""
    from kdetect.data import renderer

    if "description" in read_json(path):
        return ["render config"] if isinstance(renderer.load_config(path), dict) else []
    found = []
    for kind in kinds():
        try:
            kind.load(path)
        except ConfigError:
            continue
        found.append(kind.what)
    return found


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_kept_config_loads(path):
    assert loads_as(path), f"{path} loads as no config kind: archive it with the code it needs"


def test_a_config_naming_a_removed_option_does_not_load(tmp_path):
    # The check above means something only if an option the code no longer has is refused.
    stale = tmp_path / "stale.json"
    stale.write_text('{"train_data": "t", "val_data": "v", "out_dir": "o", "glyphs": {"centre_offset": true}}')
    assert loads_as(stale) == []
