"""The shipped default model: loads from the installed package and reads fresh captchas."""

import json

import pytest

from kdetect import solve
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.package import default_model_dir

pytestmark = pytest.mark.skipif(not (default_model_dir() / "config.json").is_file(), reason="no default model shipped")


@pytest.mark.parametrize("preset", ["gnuboard5", "l2", "varlen", "kcaptcha21"])
def test_default_model_reads_fresh_captchas(preset, tmp_path):
    spec = DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=31337, count=20)
    generate(spec, tmp_path)
    anns = [json.loads(line) for line in (tmp_path / "annotations.jsonl").open()]
    right = sum(solve(tmp_path / a["file"]) == a["text"] for a in anns)
    assert right >= 18, f"{preset}: {right} of 20"


def test_default_model_is_small():
    size = sum(p.stat().st_size for p in default_model_dir().iterdir())
    assert size < 10_000_000
