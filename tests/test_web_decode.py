"""The JavaScript decoder's own tests (web/test), run under Node so CI covers them with the rest,
and the parity vectors they read kept in step with the Python readers."""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[1] / "web"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_javascript_decoder_reads_every_vector_as_python_does():
    tests = sorted(str(p) for p in (WEB / "test").glob("*.test.mjs"))
    assert any(t.endswith("vectors.test.mjs") for t in tests)
    proc = subprocess.run(["node", "--test", *tests], capture_output=True, text=True, cwd=WEB, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "# fail 0" in proc.stdout


def test_the_vectors_are_what_the_python_readers_read_now():
    # Without this, a change to either Python decoder leaves vectors.json (and so the Node test)
    # checking the old one.
    spec = importlib.util.spec_from_file_location("make_vectors", WEB / "test" / "make_vectors.py")
    make_vectors = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_vectors)
    fresh = json.loads(json.dumps(make_vectors.vectors()))
    committed = json.loads((WEB / "test" / "vectors.json").read_text())
    assert [c["name"] for c in committed["cases"]] == [c["name"] for c in fresh["cases"]]
    for old, new in zip(committed["cases"], fresh["cases"]):
        assert alike(old, new), old["name"]
    assert alike(committed["shift_votes"], fresh["shift_votes"])


def alike(a, b) -> bool:
    """Equal JSON values, numbers to 1e-9: another BLAS may round a last bit differently."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(alike(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(alike(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return b == pytest.approx(a, rel=1e-9, abs=1e-12)
    return a == b
