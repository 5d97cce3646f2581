"""The JavaScript decoder's own tests (web/test), run under Node so CI covers them with the rest."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[1] / "web"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_javascript_decoder_matches_python_golden_cases():
    tests = sorted(str(p) for p in (WEB / "test").glob("*.test.mjs"))
    assert tests
    proc = subprocess.run(["node", "--test", *tests], capture_output=True, text=True, cwd=WEB, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout


def test_golden_cases_are_what_the_python_decoder_reads_now():
    # Without this, a change to decode.py leaves golden.json (and so the Node test) checking the old decoder.
    spec = importlib.util.spec_from_file_location("make_golden", WEB / "test" / "make_golden.py")
    make_golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_golden)
    fresh = json.loads(json.dumps(make_golden.golden_document()))
    committed = json.loads((WEB / "test" / "golden.json").read_text())
    assert [c["name"] for c in committed["cases"]] == [c["name"] for c in fresh["cases"]]
    for old, new in zip(committed["cases"], fresh["cases"]):
        assert old["meta"] == new["meta"] and old["outputs"] == new["outputs"], old["name"]
        assert old["expected"]["text"] == new["expected"]["text"], old["name"]
        assert old["expected"]["text_without_alphabet_guess"] == new["expected"]["text_without_alphabet_guess"]
        assert old["expected"]["confidence"] == pytest.approx(new["expected"]["confidence"], rel=1e-6)
        assert [(g["char"], g["score"], g["box"]) for g in old["expected"]["glyphs"]] == pytest.approx(
            [(g["char"], g["score"], g["box"]) for g in new["expected"]["glyphs"]], rel=1e-6), old["name"]
