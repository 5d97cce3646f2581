"""What a user sees first: `kdetect demo` prints its table, not TensorFlow's start-up logs."""

import os
import subprocess
import sys

import pytest

from kdetect.presets import ENGINE_PRESETS


@pytest.mark.slow  # renders every preset
def test_demo_prints_no_tensorflow_log_and_draws_each_preset_its_own_answers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG_", "GRPC_"))}
    script = ("import sys; from kdetect.cli import main; "
              f"sys.exit(main(['demo', '--count', '3', '--seed', '7', '--out', {str(tmp_path / 'demo')!r}]))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["preset", "truth", "read", "confidence"]
    truths = {}
    for line in lines[1:-1]:
        preset, truth = line.split()[:2]
        truths.setdefault(preset, []).append(truth)
    assert sorted(truths) == sorted(ENGINE_PRESETS)
    # One seed for all would make varlen's digit answers begin with l2's.
    assert not all(v.startswith(t) for t, v in zip(truths["l2"], truths["varlen"]))
