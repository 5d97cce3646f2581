"""The shipped models (the default detector, the l2 classifier baseline): they load from the
installed package and read fresh captchas."""

import json

import pytest

from kdetect import solve
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.errors import LengthError
from kdetect.package import default_model_dir, package_kind
from kdetect.presets import ENGINE_PRESETS
from kdetect.serving.solver import Solver

BASELINE = default_model_dir().parent / "baseline-l2"
pytestmark = pytest.mark.skipif(not (default_model_dir() / "config.json").is_file(), reason="no default model shipped")


def fresh(preset: str, folder) -> list[dict]:
    spec = DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=31337, count=20)
    generate(spec, folder)
    return [json.loads(line) for line in (folder / "annotations.jsonl").open()]


@pytest.mark.slow  # draws its captchas with the PHP renderer
@pytest.mark.parametrize("preset", ENGINE_PRESETS)
def test_default_model_reads_fresh_captchas(preset, tmp_path):
    anns = fresh(preset, tmp_path)
    right = sum(solve(tmp_path / a["file"]) == a["text"] for a in anns)
    assert right >= 18, f"{preset}: {right} of 20"


def test_default_model_is_small():
    """The package (float32 weights of both stages, and the same again converted for TFLite) stays
    a small download, and the browser's uint8 export of it within the 8 MB the page may fetch."""
    from kdetect.serving.export import exported_size
    from kdetect.serving.web import MODEL, web_dir

    size = sum(p.stat().st_size for p in default_model_dir().iterdir())
    assert size < 28_000_000
    if (web_dir() / MODEL).is_file():
        assert exported_size(web_dir() / "model") <= 8_000_000


@pytest.mark.slow  # draws its captchas with the PHP renderer
def test_shipped_baseline_reads_two_glyph_captchas_and_refuses_other_lengths(tmp_path):
    assert package_kind(BASELINE) == "classifier"
    assert sum(p.stat().st_size for p in BASELINE.iterdir()) < 10_000_000
    anns = fresh("l2", tmp_path)
    solver = Solver(BASELINE)
    readings = solver.read_batch([tmp_path / a["file"] for a in anns])
    right = sum(r.text == a["text"] for r, a in zip(readings, anns))
    assert right >= 18, f"{right} of 20"
    with pytest.raises(LengthError, match="2"):
        solver.read(tmp_path / anns[0]["file"], length=6)
