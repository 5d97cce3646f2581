"""The demo page in headless Chromium: a user's file-input round trip, and parity with Python's solve.

web/model must be an export of the shipped default model (`kdetect export tfjs --out web/model`),
since parity compares the page with `solve`, which reads with that model.
"""

import json
import os
from pathlib import Path

import pytest

from conftest import REALVAL
from kdetect import solve
from kdetect.data import renderer
from kdetect.data.generate import DatasetSpec, generate
from kdetect.package import default_model_dir
from kdetect.presets import ENGINE_PRESETS
from kdetect.research.browser import chromium_path
from kdetect.serving.web import MODEL, TFJS, web_dir

WEB = web_dir()
ARTIFACTS = Path(os.environ.get("KDETECT_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "out" / "test-artifacts"))

def _why_skip() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if chromium_path() is None:
        return "no Chromium (apt-get install chromium)"
    if not (WEB / TFJS).is_file():
        return "web/node_modules is missing (npm ci in web/)"
    if not (WEB / MODEL).is_file():
        return "web/model is missing (kdetect export tfjs --out web/model)"
    if not (default_model_dir() / "config.json").is_file():
        return "no default model shipped"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why_skip() is not None, reason=str(_why_skip()))]


@pytest.fixture(scope="module")
def demo():
    from kdetect.research.browser import open_demo

    with open_demo(WEB) as page:
        yield page


def fresh_images(folder: Path, per_preset: int, seed: int) -> list[tuple[Path, str]]:
    items = []
    for preset in ENGINE_PRESETS:
        out = folder / preset
        generate(DatasetSpec(config=renderer.load_config(renderer.preset_path(preset)), seed=seed, count=per_preset), out)
        items += [(out / a["file"], a["text"]) for a in map(json.loads, (out / "annotations.jsonl").open())]
    return items


def test_metadata_matches_the_shipped_model(demo):
    shipped = json.loads((default_model_dir() / "config.json").read_text())
    meta = demo.page.evaluate("window.kdetect.metadata")
    assert meta["charset"] == shipped["charset"] and meta["anchors"] == shipped["anchors"]
    # A second stage shipped is a second stage exported (its config travels in the metadata).
    glyphs = default_model_dir() / "glyphs.json"
    assert meta.get("glyphs") == (json.loads(glyphs.read_text()) if glyphs.is_file() else None)


def test_file_input_shows_the_answer(demo, tmp_path):
    (path, truth), = fresh_images(tmp_path, 1, seed=4242)[:1]
    answer = demo.read_through_input(path)
    assert answer == solve(path)
    assert demo.page.inner_text("#glyphs").count("\n") + 1 == len(answer)
    assert float(demo.page.inner_text("#time")) > 0
    assert demo.backend in ("cpu", "wasm", "webgl", "webgpu")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "browser-demo.png"
    demo.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 1000


def test_page_rejects_a_file_that_is_not_an_image(demo, tmp_path):
    bogus = tmp_path / "note.png"
    bogus.write_bytes(b"this is not a PNG")
    demo.page.set_input_files("#file", str(bogus))
    demo.page.wait_for_function("document.body.dataset.state === 'error'")
    assert demo.page.evaluate("document.body.dataset.error") == "image"


def test_browser_answers_equal_python(demo, tmp_path):
    """Every answer of 200 fresh synthetic images and of all realval reads the same in the page."""
    items = [path for path, _ in fresh_images(tmp_path, 50, seed=777)]
    if REALVAL.is_dir():
        for folder in sorted(p for p in REALVAL.iterdir() if (p / "labels.tsv").is_file()):
            items += [folder / line.split("\t")[0] for line in (folder / "labels.tsv").read_text().splitlines() if line]
    python = [solve(path) for path in items]
    browser = [r["text"] for r in demo.read_files(items)]
    mismatches = [f"{p}: python {a!r}, browser {b!r}" for p, a, b in zip(items, python, browser) if a != b]
    print(f"parity: {len(items) - len(mismatches)} of {len(items)} answers equal")
    assert not mismatches, f"{len(mismatches)} of {len(items)} differ:\n" + "\n".join(mismatches)
