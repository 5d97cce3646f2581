"""`kdetect web`: the static server and its checks, without a browser."""

import shutil
import threading
import urllib.request

import pytest

from kdetect.errors import KdetectError
from kdetect.serving.web import check_web, make_server, web_dir


def test_server_serves_the_page_cross_origin_isolated(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    (tmp_path / "app.js").write_text("export const x = 1;\n")
    server = make_server(tmp_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        with urllib.request.urlopen(base) as page:
            assert b"<title>t</title>" in page.read()
            assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert page.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        with urllib.request.urlopen(base + "app.js") as script:
            assert script.headers["Content-Type"].startswith("text/javascript")
    finally:
        server.shutdown()
        server.server_close()


def test_busy_port_names_the_fix(tmp_path):
    first = make_server(tmp_path, port=0)
    try:
        with pytest.raises(KdetectError, match="--port"):
            make_server(tmp_path, port=first.server_address[1])
    finally:
        first.server_close()


def test_missing_tfjs_and_missing_model_are_named(tmp_path):
    shutil.copy(web_dir() / "index.html", tmp_path / "index.html")
    with pytest.raises(KdetectError, match="npm ci"):
        check_web(tmp_path)
    tfjs = tmp_path / "node_modules/@tensorflow/tfjs/dist/tf.min.js"
    tfjs.parent.mkdir(parents=True)
    tfjs.write_text("")
    with pytest.raises(KdetectError, match="kdetect export tfjs"):
        check_web(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.json").write_text("{}")
    check_web(tmp_path)
