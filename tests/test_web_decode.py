"""The JavaScript decoder's own tests (web/test), run under Node so CI covers them with the rest."""

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
