"""Without the train extra, what needs it says which extra to install (the plain install has no
TensorFlow; tests/test_import_cost.py checks that reading never loads it)."""

import pytest

from kdetect import extras
from kdetect.cli import main
from kdetect.errors import MissingExtraError


@pytest.fixture
def no_tensorflow(monkeypatch):
    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda module: module != "tensorflow" and real(module))


@pytest.mark.parametrize("argv, named", [
    (["train", "run.json"], "kdetect train"),
    (["finetune", "site/", "--out", "runs/x"], "kdetect finetune"),
    (["compact", "pkg", "--out", "out"], "kdetect compact"),
    (["export", "tflite", "--out", "out"], "kdetect export"),
    (["generate", "--preset", "l2", "--count", "1", "--out", "d", "--tfrecord"], "kdetect generate --tfrecord"),
    (["solve", "a.jpg", "--backend", "tf"], "kdetect solve --backend tf"),
])
def test_commands_that_need_tensorflow_name_the_extra(no_tensorflow, capsys, argv, named):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f'{named} needs tensorflow' in err and 'pip install "kdetect[train]"' in err


def test_require_passes_where_the_module_is_there_and_names_the_extra_where_not():
    extras.require("numpy", extras.TRAIN, "reading")
    with pytest.raises(MissingExtraError, match=r'pip install "kdetect\[train\]"'):
        extras.require("no_such_module_kdetect", extras.TRAIN, "kdetect train")
    with pytest.raises(MissingExtraError, match=r"dependency of kdetect .* pip install kdetect$"):
        extras.require("no_such_module_kdetect", None, "kdetect serve")
    assert not extras.installed("no_such_module_kdetect.sub")
