"""`kdetect serve` as a real server (a child process on 127.0.0.1): the probes of
tests/test_property_inputs.py sent over HTTP, and a short load test with every option.

Random bytes, the opening of every format PIL reads followed by random bytes, bit-flipped
captchas and decompression bombs of every format go to POST /solve as the raw body, as a
multipart file and as base64 JSON. Every answer is JSON: 200 with a reading where kdetect's loader
reads the bytes in this process, else a 4xx naming the problem; never a 5xx. The server's peak
memory stays under the 1.5 GB the in-process tests allow, and a captcha sent after all of them
reads as Solver reads it. (The arrays of the property tests have no HTTP form.)"""

import base64
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile import BOMB_SIDES, BOMBS, flipped_captchas, format_files, format_openings, png_bomb
from kdetect.errors import KdetectError
from kdetect.images import load_image
from kdetect.serving.solver import Solver

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from load_test import Server, labelled, run_load  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES = {"random bytes": 600, "format openings": 600, "flipped captchas": 300, "bombs": 24}
PEAK_MB = 1536
SETTINGS = {"deadline": None, "derandomize": True, "database": None, "suppress_health_check": list(HealthCheck)}
KEY = "hostile-probe-key"
FILES = format_files()


@pytest.fixture(scope="module")
def server():
    with Server(api_key=KEY) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    import httpx

    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def captchas(tmp_path_factory) -> list[bytes]:
    from kdetect.data import renderer
    from kdetect.data.generate import DatasetSpec, generate

    out = tmp_path_factory.mktemp("captchas")
    generate(DatasetSpec(config=renderer.load_config(renderer.preset_path("gnuboard5")), seed=27, count=3), out)
    return [p.read_bytes() for p in sorted(out.glob("*.jpg"))]


def readable(data: bytes) -> bool:
    try:
        load_image(data)
    except KdetectError:
        return False
    return True


def probe(http, data: bytes, form: int) -> None:
    """The property: a readable image is read (200), anything else is a 4xx JSON error."""
    if form == 0:
        answer = http.post("/solve", content=data, headers={"content-type": "application/octet-stream"})
    elif form == 1:
        answer = http.post("/solve", files={"image": ("probe", data)})
    else:
        answer = http.post("/solve", json={"image": base64.b64encode(data).decode()})
    body = answer.json()
    if readable(data):
        assert answer.status_code == 200 and isinstance(body["text"], str), (answer.status_code, body)
    else:
        assert 400 <= answer.status_code < 500 and body["error"]["message"], (answer.status_code, body)


def run(http, strategy, name: str) -> None:
    tried = []

    @settings(max_examples=EXAMPLES[name], **SETTINGS)
    @given(strategy, st.integers(0, 2))
    def holds(data, form):
        tried.append(1)
        probe(http, data, form)

    holds()
    assert len(tried) >= EXAMPLES[name]


def peak_mb(server) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_hostile_probes_are_answered_4xx_and_the_server_stays_small_and_right(server, http, captchas):
    run(http, st.binary(max_size=4096), "random bytes")

    run(http, format_openings(FILES), "format openings")
    run(http, flipped_captchas(captchas), "flipped captchas")

    @st.composite
    def bombs(draw) -> bytes:
        kind = draw(st.sampled_from(sorted(BOMBS)))
        return BOMBS[kind](*(min(draw(st.integers(2001, 2**32)), BOMB_SIDES[kind]) for _ in range(2)))

    run(http, bombs(), "bombs")
    # 25 million real pixels: within the body limit, refused by its header.
    probe(http, png_bomb(5000, 5000, rows=5000), 0)
    # Far more than the body limit, sent as a declared 2 GB upload: refused before it is read.
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(f"POST /solve HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Length: {2 << 30}\r\n\r\n"
                    .encode() + png_bomb(100, 100))
        raw.settimeout(30)
        answer = b""
        while b"}}" not in answer and (piece := raw.recv(65536)):
            answer += piece
    assert answer.startswith(b"HTTP/1.1 413") and b"too_large" in answer
    # Requests of the wrong shape.
    for kwargs in ({"json": {"image": "!!"}}, {"json": {"images": []}}, {"content": b"{", "headers":
                   {"content-type": "application/json"}}, {"json": {"image": "AAAA", "length": -1}}):
        answer = http.post("/solve", **kwargs)
        assert 400 <= answer.status_code < 500 and answer.json()["error"]["code"]

    assert peak_mb(server) < PEAK_MB
    assert server.process.poll() is None
    for data in captchas:
        assert http.post("/solve", content=data).json()["text"] == Solver().read(data).text


def test_load_with_two_workers_and_the_api_key(captchas, tmp_path):
    (tmp_path / "labels.tsv").write_text("".join(f"{i}.jpg\t{Solver().read(d).text}\n" for i, d in
                                                 enumerate(captchas)))
    for i, data in enumerate(captchas):
        (tmp_path / f"{i}.jpg").write_bytes(data)
    items = labelled([tmp_path])
    with Server(workers=2, api_key=KEY) as running:
        refused = run_load(running.url, items, requests=8, clients=2, time_limit=30)
        result = run_load(running.url, items, requests=200, clients=16, time_limit=120, api_key=KEY)
    assert refused["errors"] == 8 and "401" in refused["error_examples"][0]
    assert result["requests"] == 200 and result["errors"] == 0 and result["wrong_answers"] == 0
    assert result["p50_ms"] <= result["p99_ms"]
