"""The TFLite backend reads what the TF graph reads; a package carries its own conversion, checked
by digest; one without it is converted and cached, and never needs the cache."""

import json
import shutil
import threading
import warnings

import numpy as np
import pytest

from kdetect.detector.config import ModelConfig
from kdetect.errors import ConfigError
from kdetect.serving import lite
from kdetect.serving.solver import Solver


@pytest.fixture(scope="module")
def package(untrained_package):
    return untrained_package(1)


@pytest.fixture(scope="module")
def bare_package(package, tmp_path_factory):
    """The package as kdetect wrote it before packages carried TFLite files."""
    out = tmp_path_factory.mktemp("bare") / "model"
    shutil.copytree(package, out)
    for name in ("lite.json", "model.tflite", "glyphs.tflite"):
        (out / name).unlink(missing_ok=True)
    return out


def test_a_package_carries_its_conversion_and_reading_converts_nothing(package, images, monkeypatch):
    manifest = json.loads((package / "lite.json").read_text())
    assert manifest["network"] == lite.network_digest(package) and set(manifest["parts"]) == {"model"}
    expected = [r.text for r in Solver(package, backend="tf").read_batch(images)]

    def no_conversion(*_):
        raise AssertionError("converted although the package carries its TFLite files")

    monkeypatch.setattr(lite, "cached_conversion", no_conversion)
    assert [r.text for r in Solver(package).read_batch(images)] == expected


@pytest.mark.parametrize("damage", ["flip a byte", "change the weights", "drop the manifest", "garble the manifest"])
def test_damaged_or_stale_tflite_files_are_converted_again(package, images, tmp_path, damage):
    copy = tmp_path / "model"
    shutil.copytree(package, copy)
    if damage == "flip a byte":
        blob = bytearray((copy / "model.tflite").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (copy / "model.tflite").write_bytes(bytes(blob))
    elif damage == "change the weights":
        config = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps(config | {"score_threshold": 0.9}))
    elif damage == "drop the manifest":
        (copy / "lite.json").unlink()
    else:
        (copy / "lite.json").write_text("{not json")
    networks, why = lite.packaged_lite(copy)
    assert networks is None and why
    # Where TensorFlow is installed, reading converts the package as it is now.
    graph = Solver(copy, backend="tf").read_batch(images)
    assert [r.text for r in Solver(copy).read_batch(images)] == [r.text for r in graph]


def test_without_tensorflow_a_package_it_must_convert_names_the_extra(bare_package, monkeypatch):
    from kdetect.serving import reader

    monkeypatch.setattr(reader, "installed", lambda module: module != "tensorflow")
    with pytest.raises(ConfigError, match=r'pip install "kdetect\[train\]"') as err:
        Solver(bare_package).load()
    assert "lite.json" in str(err.value)


@pytest.fixture(scope="module")
def images():
    """Two sizes (Gnuboard's 160x60 and KCAPTCHA 2.1's 160x80), a few images of each."""
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (h, 160, 3), dtype=np.uint8) for h in (60, 60, 60, 80, 80)]


def test_lite_and_tf_backends_give_the_same_outputs_and_readings(package, images):
    fast, graph = Solver(package, backend="lite"), Solver(package, backend="tf")
    fast.load(), graph.load()
    for size_group in (images[:3], images[3:]):
        batch = np.stack(size_group)
        ours, theirs = fast.reader._infer(batch), graph.reader._infer(batch)
        assert [o.shape for o in ours] == [t.shape for t in theirs]
        for o, t in zip(ours, theirs):
            np.testing.assert_allclose(o, t, atol=2e-4)
    readings = fast.read_batch(images)
    assert [r.text for r in readings] == [r.text for r in graph.read_batch(images)]
    assert all(r.text for r in readings)
    assert fast.read(images[0]) == readings[0]  # one image alone reads as it did in a batch


def test_the_conversion_is_cached_under_the_package_contents(bare_package, images, lite_cache, tmp_path,
                                                              monkeypatch):
    package = bare_package
    Solver(package).read(images[0])
    key = lite.package_key(package)
    assert (lite_cache / f"{key}.tflite").is_file()

    def no_conversion(*_):
        raise AssertionError("converted again although the cache holds this package")

    monkeypatch.setattr(lite, "convert", no_conversion)
    assert Solver(package).read(images[0]).text
    # Other weights (a retrained package under the same name) must not meet the old conversion.
    changed = tmp_path / "changed"
    changed.mkdir()
    for f in package.iterdir():
        (changed / f.name).write_bytes(f.read_bytes())
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps(config | {"score_threshold": 0.5}))
    assert lite.package_key(changed) != key


def test_an_unwritable_cache_warns_and_still_reads(bare_package, images, tmp_path, monkeypatch):
    package = bare_package
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("KDETECT_CACHE", str(blocked))
    with pytest.warns(UserWarning, match="KDETECT_CACHE"):
        reading = Solver(package).read(images[0])
    assert reading.text == Solver(package, backend="tf").read(images[0]).text
    assert blocked.read_text() == "a file where the cache folder should be"


def test_a_damaged_cache_file_is_replaced(bare_package, images, lite_cache):
    package = bare_package
    expected = Solver(package).read(images[0]).text
    path = lite.cache_path(package)
    path.write_bytes(b"not a flatbuffer")
    assert Solver(package).read(images[0]).text == expected
    assert path.stat().st_size > 1000 and path.read_bytes()[4:8] == b"TFL3"  # converted afresh


def test_concurrent_reads_share_one_interpreter_safely(package, images):
    solver = Solver(package)
    expected = [r.text for r in solver.read_batch(images)]
    results, errors = {}, []

    def work(i):
        try:
            results[i] = [solver.read(im).text for im in images]
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected for r in results.values()) and len(results) == 4


def test_an_unknown_backend_is_refused(package):
    with pytest.raises(ConfigError, match="backend"):
        Solver(package, backend="onnx")


def test_exported_tflite_runs_alone_and_matches(package, images, tmp_path):
    import tensorflow as tf

    from kdetect.serving.export import export_tflite

    out = export_tflite(package, tmp_path / "lite")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["format"] == "kdetect-tflite-1" and meta["charset"] == ModelConfig().charset
    with warnings.catch_warnings():
        # As kdetect/serving/lite.py: TF 2.19 announces the interpreter's move to ai-edge-litert.
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_path=str(out / "model.tflite"))
    outputs = interpreter.get_signature_runner()(image=images[0][None])
    expected = Solver(package, backend="tf")
    expected.load()
    theirs = expected.reader._infer(images[0][None])
    by_shape = {o.shape: o for o in outputs.values()}
    for t in theirs:
        np.testing.assert_allclose(by_shape[t.shape], t, atol=2e-4)
