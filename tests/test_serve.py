"""`kdetect serve`: every endpoint, input form and option, the API key, the limits, and the
batching of requests from many clients, against the app in this process (the shipped model)."""

import asyncio
import base64
import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import REALVAL
from kdetect.cli import main
from kdetect.errors import ConfigError
from kdetect.package import default_model_dir
from kdetect.serving import server as serving
from kdetect.serving.lite import network_digest
from kdetect.serving.server import API_KEY_ENV, ServeConfig, create_app, serve_config
from kdetect.serving.solver import Solver

with warnings.catch_warnings():
    # Starlette 1.x announces a move of its test client's HTTP library; this one still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

KEY = "s3cret-key-for-tests"


def captchas() -> list[bytes]:
    """Real captchas where ../shared/realval is here, else synthetic stand-ins (noise with bars)."""
    folder = REALVAL / "gnuboard5"
    if folder.is_dir():
        return [p.read_bytes() for p in sorted(folder.glob("*.jpg"))[:6]]
    rng = np.random.default_rng(3)
    out = []
    for _ in range(6):
        pixels = np.full((60, 160, 3), 240, np.uint8)
        for x in rng.integers(10, 140, 6):
            pixels[15:45, x:x + 6] = 20
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


IMAGES = captchas()


@pytest.fixture(scope="module")
def solver():
    solver = Solver()
    solver.load()
    return solver


@pytest.fixture(scope="module")
def expected(solver):
    return [r.text for r in solver.read_batch(IMAGES)]


@pytest.fixture(scope="module")
def client(solver):
    with TestClient(create_app(ServeConfig(), solver)) as c:
        yield c


def client_with(solver, **config):
    return TestClient(create_app(ServeConfig(**config), solver))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()["error"]


def test_health_and_model(client, solver):
    assert client.get("/health").json() == {"status": "ok"}
    facts = client.get("/model").json()
    assert facts["charset"] == solver.config.charset and facts["kind"] == "detector"
    assert facts["digest"] == network_digest(default_model_dir()) and facts["glyph_reader"] is True
    assert facts["input"] == {"width": solver.config.input_width, "height": solver.config.input_height}


def test_solve_reads_raw_bytes_multipart_and_base64_json_alike(client, solver, expected):
    data = IMAGES[0]
    raw = client.post("/solve", content=data, headers={"content-type": "image/jpeg"}).json()
    form = client.post("/solve", files={"image": ("c.jpg", data, "image/jpeg")}).json()
    posted = client.post("/solve", json={"image": b64(data)}).json()
    data_url = client.post("/solve", json={"image": "data:image/jpeg;base64," + b64(data)}).json()
    assert raw["text"] == form["text"] == posted["text"] == data_url["text"] == expected[0]
    reading = solver.read(data)
    assert raw["confidence"] == round(reading.confidence, 4)
    assert [g["char"] for g in raw["glyphs"]] == [g.char for g in reading.glyphs]
    assert raw["glyphs"][0]["box"] == [round(float(v), 1) for v in reading.glyphs[0].box]
    assert raw["ms"] >= 0


def test_length_and_symbols_in_every_form(client, expected):
    data = IMAGES[1]
    by_length = Solver(length=4).read(data).text
    digits_only = Solver(symbols="abcdef").read(data).text
    assert client.post("/solve?length=4", content=data).json()["text"] == by_length
    assert client.post("/solve", files={"image": ("c.jpg", data)}, data={"length": "4"}).json()["text"] == by_length
    assert client.post("/solve", json={"image": b64(data), "length": 4}).json()["text"] == by_length
    assert client.post("/solve?symbols=fedcba", content=data).json()["text"] == digits_only
    assert client.post("/solve", json={"image": b64(data), "symbols": "abcdef"}).json()["text"] == digits_only
    assert set(digits_only) <= set("abcdef")
    assert client.post("/solve", content=data).json()["text"] == expected[1]  # options hold for one request only


def test_batch_in_json_and_multipart(client, expected):
    answer = client.post("/solve/batch", json={"images": [b64(d) for d in IMAGES]}).json()
    assert [r["text"] for r in answer["results"]] == expected
    files = [("images", (f"{i}.jpg", d, "image/jpeg")) for i, d in enumerate(IMAGES[:3])]
    answer = client.post("/solve/batch", files=files, data={"length": "6"}).json()
    assert [r["text"] for r in answer["results"]] == [r.text for r in Solver(length=6).read_batch(IMAGES[:3])]


@pytest.mark.parametrize("request_args, status, code", [
    ({"content": b"not an image at all"}, 422, "not_an_image"),
    ({"content": b""}, 400, "no_image"),
    ({"json": {"image": "%%%not base64"}}, 400, "bad_base64"),
    ({"json": {"image": 12}}, 400, "bad_base64"),
    ({"json": {"image": ""}}, 400, "no_image"),
    ({"json": {"picture": "AAAA"}}, 400, "bad_field"),
    ({"json": {"length": 6}}, 400, "bad_field"),
    ({"json": ["AAAA"]}, 400, "bad_json"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "bad_json"),
    ({"json": {"image": "AAAA", "length": 0}}, 400, "bad_field"),
    ({"json": {"image": "AAAA", "length": "six"}}, 400, "bad_field"),
    ({"json": {"image": "AAAA", "length": True}}, 400, "bad_field"),
    ({"json": {"image": "AAAA", "symbols": ""}}, 400, "bad_field"),
    ({"json": {"image": "AAAA", "symbols": ["1"]}}, 400, "bad_field"),
    ({"files": [("image", ("a.jpg", b"x")), ("image", ("b.jpg", b"y"))]}, 400, "bad_field"),
    ({"files": {"image": ("a.jpg", b"x")}, "data": {"colour": "red"}}, 400, "bad_field"),
    ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 400, None),
    ({"content": b"abc", "headers": {"content-type": "multipart/form-data"}}, 400, "bad_multipart"),
])
def test_bad_requests_are_4xx_json_naming_the_problem(client, request_args, status, code):
    error = error_of(client.post("/solve", **request_args), status)
    assert error["message"] and (code is None or error["code"] == code)


def test_wrong_symbols_and_lengths_are_refused_after_reading_starts(client):
    error = error_of(client.post("/solve", json={"image": b64(IMAGES[0]), "symbols": "XYZ"}), 400)
    assert "charset" in error["message"]
    error = error_of(client.post("/solve?length=65", content=IMAGES[0]), 400)
    assert "1 to 64" in error["message"]


def test_bad_batches(client):
    assert error_of(client.post("/solve/batch", content=IMAGES[0]), 415)["code"] == "unsupported_media_type"
    assert error_of(client.post("/solve/batch", json={"images": []}), 400)["code"] == "bad_field"
    assert error_of(client.post("/solve/batch", json={"images": [b64(IMAGES[0])] * 65}), 413)["code"] == \
        "too_many_images"
    error = error_of(client.post("/solve/batch", json={"images": [b64(IMAGES[0]), b64(b"junk")]}), 422)
    assert "one of the images" in error["message"]


def test_unknown_paths_and_methods_answer_json(client):
    assert error_of(client.get("/nowhere"), 404)["code"] == "not_found"
    assert error_of(client.get("/solve"), 405)["code"] == "method_not_allowed"
    assert "POST /solve" in error_of(client.delete("/model"), 405)["message"]


def test_the_body_limit(solver):
    with client_with(solver, max_body_bytes=4096) as small:
        assert error_of(small.post("/solve", content=bytes(5000)), 413)["code"] == "too_large"
        # Without a Content-Length (a chunked upload), the limit holds as the body arrives.
        chunks = iter([bytes(3000), bytes(3000)])
        assert error_of(small.post("/solve", content=chunks), 413)["code"] == "too_large"
        if len(IMAGES[0]) < 4096:
            assert small.post("/solve", content=IMAGES[0]).status_code == 200


def test_the_api_key(solver, expected):
    with client_with(solver, api_key=KEY) as keyed:
        assert keyed.get("/health").status_code == 200  # a load balancer's probe needs no key
        assert error_of(keyed.post("/solve", content=IMAGES[0]), 401)["code"] == "unauthorized"
        assert error_of(keyed.get("/model"), 401)["code"] == "unauthorized"
        assert error_of(keyed.post("/solve", content=IMAGES[0], headers={"x-api-key": KEY + "x"}), 401)
        assert keyed.post("/solve", content=IMAGES[0], headers={"x-api-key": KEY}).json()["text"] == expected[0]
        bearer = {"authorization": f"Bearer {KEY}"}
        assert keyed.post("/solve/batch", json={"images": [b64(IMAGES[0])]}, headers=bearer).status_code == 200


def test_the_api_key_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    assert serve_config().api_key == KEY
    assert serve_config(api_key="another-key-123").api_key == "another-key-123"
    monkeypatch.setenv(API_KEY_ENV, "")
    assert serve_config().api_key is None
    with pytest.raises(ConfigError, match="at least 8"):
        serve_config(api_key="short")
    with pytest.raises(ConfigError, match="not a kdetect model package"):
        serve_config(tmp_path)


@pytest.mark.parametrize("limits", [{"max_body_bytes": 0}, {"max_in_flight": -1}, {"batch_window_ms": -1},
                                    {"max_batch": 1.5}])
def test_limits_are_checked(limits):
    with pytest.raises(ConfigError):
        serve_config(**limits)


def asgi_requests(app, calls):
    """Run the app's lifespan and the given (method, path, kwargs) requests concurrently -> responses."""
    import httpx

    async def go():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await asyncio.gather(*(c.request(m, p, **kw) for m, p, kw in calls))

    return asyncio.run(go())


def test_requests_from_many_clients_share_a_network_call(solver, expected, monkeypatch):
    sizes = []
    read_all = serving.Batcher._read_all

    def recorded(self, jobs):
        sizes.append(len(jobs))
        return read_all(self, jobs)

    monkeypatch.setattr(serving.Batcher, "_read_all", recorded)
    # A long window, so that all eight are waiting when it closes.
    app = create_app(ServeConfig(batch_window_ms=300), solver)
    answers = asgi_requests(app, [("POST", "/solve", {"content": d}) for d in IMAGES] * 2)
    assert [a.json()["text"] for a in answers] == expected * 2
    assert max(sizes) > 1 and sum(sizes) == 2 * len(IMAGES)


def test_requests_past_the_in_flight_limit_are_told_to_retry(solver):
    app = create_app(ServeConfig(max_in_flight=2, batch_window_ms=300), solver)
    answers = asgi_requests(app, [("POST", "/solve", {"content": IMAGES[0]})] * 5)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 429, 429, 429]
    assert all(a.json()["error"]["code"] == "busy" for a in answers if a.status_code == 429)


def test_a_failure_inside_reading_is_a_json_answer_and_the_server_goes_on(solver, monkeypatch, expected):
    reader = solver.load()
    original, calls = type(reader).read_batch, []

    def fails_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the interpreter failed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(reader), "read_batch", fails_once)
    with client_with(solver) as c:
        error = error_of(c.post("/solve", content=IMAGES[0]), 500)
        assert error["code"] == "internal" and "keeps serving" in error["message"]
        assert c.post("/solve", content=IMAGES[0]).json()["text"] == expected[0]


def test_serve_command_refuses_bad_options(capsys, tmp_path):
    assert main(["serve", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "not a kdetect model package" in capsys.readouterr().err
    assert main(["serve", "--batch-window-ms", "5000"]) == 2
    assert "batch_window_ms" in capsys.readouterr().err


def test_serve_config_round_trips_to_workers(monkeypatch):
    config = serve_config(api_key=KEY, max_body_bytes=1000, batch_window_ms=1.5)
    import dataclasses

    monkeypatch.setenv(serving.CONFIG_ENV, json.dumps(dataclasses.asdict(config)))
    app = serving.app_from_environment()
    assert app is not None and ServeConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(config)))) == config


def test_a_batch_of_large_images_is_read_a_pixel_budget_at_a_time(solver, expected, monkeypatch):
    calls = []
    reader = solver.load()
    original = type(reader).read_batch

    def counted(self, images, *args, **kwargs):
        calls.append(len(images))
        return original(self, images, *args, **kwargs)

    monkeypatch.setattr(type(reader), "read_batch", counted)
    monkeypatch.setattr(serving, "BATCH_PIXELS", 2 * 160 * 60)  # two 160x60 captchas
    with client_with(solver) as c:
        answer = c.post("/solve/batch", json={"images": [b64(d) for d in IMAGES]}).json()
    assert [r["text"] for r in answer["results"]] == expected
    assert max(calls) <= 2 and sum(calls) == len(IMAGES)
