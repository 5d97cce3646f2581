"""Solving must not pay for training: `import kdetect`, and reading with the shipped model, stay
clear of the training stack (the plain install has no TensorFlow)."""

import json
import subprocess
import sys

# Modules only training, generating or research needs; none may load with `import kdetect`.
HEAVY = ("albumentations", "tensorflow", "keras", "kdetect.data", "kdetect.training", "kdetect.research")


def loaded_after(statement: str) -> list[str]:
    script = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_import_kdetect_loads_no_training_module():
    for statement in ("import kdetect", "from kdetect import solve, Solver"):
        modules = loaded_after(statement)
        assert "kdetect.serving.solver" in modules
        heavy = [m for m in modules if m in HEAVY or m.startswith(tuple(h + "." for h in HEAVY))]
        assert heavy == [], f"{statement} loads {heavy}"


def test_reading_a_captcha_loads_no_training_module():
    # The shipped package carries its TFLite files: reading runs them without TensorFlow or Keras.
    statement = ("import numpy as np\nfrom kdetect import Solver\n"
                 "r = Solver().read(np.full((60, 160, 3), 255, np.uint8))\nassert isinstance(r.text, str)")
    modules = loaded_after(statement)
    assert "kdetect.serving.detector_reader" in modules and "kdetect.serving.lite" in modules
    heavy = [m for m in modules if m in HEAVY or m.startswith(tuple(h + "." for h in HEAVY))]
    assert heavy == [], f"reading loads {heavy}"


def test_a_broken_training_stack_does_not_stop_import(tmp_path):
    # A stand-in that fails on import proves the check above would see the module if it loaded.
    (tmp_path / "albumentations.py").write_text("raise ImportError('training stack loaded')\n")
    script = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import kdetect; print('ok')"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
