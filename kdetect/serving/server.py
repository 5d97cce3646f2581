"""`kdetect serve`: reading captchas over HTTP, an ASGI app (Starlette) for uvicorn.

    POST /solve         one image: a multipart file, the raw bytes, or JSON {"image": "<base64>"};
                        optional length and symbols (form fields, JSON keys or query parameters)
    POST /solve/batch   several: multipart files, or JSON {"images": ["<base64>", ...]}
    GET  /health        {"status": "ok"} (no API key needed: a load balancer's probe)
    GET  /model         the model package's facts: kind, charset, digest, input size, alphabets

Requests from all clients wait a few milliseconds in one queue and run through the network
together (Batcher): a captcha alone costs a network call of its own, 32 of them little more than
a few. Whatever a client sends, the answer to a bad request is a 4xx JSON object
{"error": {"code", "message"}} naming the problem: the body is bounded before it is read, the
image's pixel count before it is decoded (kdetect.images), and the number of requests in flight.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import copy
import dataclasses
import hmac
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdetect.configio import JsonConfig
from kdetect.errors import ConfigError, InvalidImageError, KdetectError, LengthError
from kdetect.images import load_image
from kdetect.package import GLYPH_CONFIG, package_kind
from kdetect.readings import Reading
from kdetect.serving.reader import BATCH_PIXELS
from kdetect.serving.solver import Solver

# The environment variable a worker process reads its ServeConfig from (uvicorn starts workers
# from an import string, so the config cannot travel as an object).
CONFIG_ENV = "KDETECT_SERVE_CONFIG"
API_KEY_ENV = "KDETECT_API_KEY"


@dataclass(frozen=True)
class ServeConfig(JsonConfig):
    """What `kdetect serve` serves, and its limits."""

    what = "serve config"
    model: str | None = None  # a package folder; None: the shipped default
    api_key: str | None = None  # required as X-API-Key or "Authorization: Bearer" where set
    # What the server holds at most is about max_in_flight bodies: captchas are a few kB.
    max_body_bytes: int = 1024 * 1024  # a request's body
    max_batch_images: int = 64  # images one /solve/batch request may hold
    max_in_flight: int = 128  # requests read or waiting at once; more are answered 429
    batch_window_ms: float = 2.0  # how long the first request of a batch waits for others
    max_batch: int = 64  # images one network call takes
    max_symbol_sets: int = 32  # distinct `symbols` values kept ready; others wait their turn

    def validate(self) -> None:
        for name in ("max_body_bytes", "max_batch_images", "max_in_flight", "max_batch", "max_symbol_sets"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive whole number, not {getattr(self, name)!r}")
        if not 0 <= self.batch_window_ms <= 1000:
            raise ConfigError(f"batch_window_ms must lie in 0..1000, not {self.batch_window_ms!r}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ConfigError("an API key must have at least 8 characters")


class RequestError(Exception):
    """A request the server refuses: the HTTP status, a short code and a message naming the fix."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Job:
    """One image to read: its bytes and the options its request gave."""

    data: bytes
    length: int | None
    symbols: str | None


class Batcher:
    """Collects images from every request for batch_window_ms (or until max_batch), then reads
    them in one network call on a thread of its own, so the event loop keeps taking requests."""

    def __init__(self, solver: Solver, config: ServeConfig):
        self.solver, self.config = solver, config
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._readers: OrderedDict[str | None, Any] = OrderedDict()

    def start(self) -> None:
        self._queue = asyncio.Queue()
        # One thread: the interpreter runs one call at a time anyway, on all the cores it may use.
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kdetect-read")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._thread.shutdown(wait=False)

    async def read(self, jobs: list[Job]) -> list[Reading]:
        """Readings of the jobs' images, in order; the first unreadable one raises its error."""
        loop = asyncio.get_running_loop()
        futures = []
        for job in jobs:
            future = loop.create_future()
            self._queue.put_nowait((job, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.config.batch_window_ms / 1000
            while len(batch) < self.config.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            batch = [(job, f) for job, f in batch if not f.done()]  # a client that went away
            try:
                results = await loop.run_in_executor(self._thread, self._read_all, [job for job, _ in batch])
            except Exception as err:  # noqa: BLE001 - this loop must outlive any batch, or every request would wait
                results = [err] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _read_all(self, jobs: list[Job]) -> list[Reading | Exception]:
        """Each job's reading or error; jobs with the same options run through the network together.
        Decoded pixels are read as soon as they add up to BATCH_PIXELS: a batch of the largest
        images allowed would otherwise hold all of them decoded at once."""
        results: list[Reading | Exception | None] = [None] * len(jobs)
        groups: dict[tuple[int | None, str | None], list[tuple[int, Any]]] = {}
        pixels = 0
        for i, job in enumerate(jobs):
            try:
                array = load_image(job.data)
            except KdetectError as err:
                results[i] = err
                continue
            groups.setdefault((job.length, job.symbols), []).append((i, array))
            pixels += array.shape[0] * array.shape[1]
            if pixels >= BATCH_PIXELS:
                self._read_groups(groups, results)
                groups, pixels = {}, 0
        self._read_groups(groups, results)
        return results

    def _read_groups(self, groups: dict, results: list) -> None:
        for (length, symbols), items in groups.items():
            try:
                readings = self._reader(symbols).read_batch([a for _, a in items], length=length)
            except KdetectError as err:
                readings = [err] * len(items)
            except Exception as err:  # noqa: BLE001 - one failed batch must not stop the server
                readings = [err] * len(items)
            for (i, _), reading in zip(items, readings):
                results[i] = reading

    def _reader(self, symbols: str | None):
        """The solver's reader with these symbols: the loaded networks shared, only decoding differs."""
        base = self.solver.load()
        if symbols is None:
            return base
        if symbols not in self._readers:
            reader = copy.copy(base)
            reader.symbols = symbols
            reader._check_symbols()
            self._readers[symbols] = reader
            if len(self._readers) > self.config.max_symbol_sets:
                self._readers.popitem(last=False)
        self._readers.move_to_end(symbols)
        return self._readers[symbols]


def reading_json(reading: Reading) -> dict:
    # A classifier baseline finds no glyph places: its boxes are null.
    return {"text": reading.text, "confidence": round(reading.confidence, 4),
            "glyphs": [{"char": g.char, "score": round(g.score, 4),
                        "box": None if g.box is None else [round(float(v), 1) for v in g.box]}
                       for g in reading.glyphs]}


def model_facts(solver: Solver) -> dict:
    """What GET /model answers: the package's facts, read from its files."""
    from kdetect.version import __version__
    from kdetect.package import read_training
    from kdetect.serving.lite import network_digest

    reader = solver.load()
    cfg = reader.config
    training = read_training(solver.model_dir) or {}
    facts = {"kdetect_version": __version__, "model": solver.model_dir.name, "kind": package_kind(solver.model_dir),
             "charset": cfg.charset, "digest": network_digest(solver.model_dir),
             "input": {"width": cfg.input_width, "height": cfg.input_height},
             "glyph_reader": (solver.model_dir / GLYPH_CONFIG).is_file(),
             "answer_length": getattr(cfg, "answer_length", None) or getattr(cfg, "length", None),
             "alphabets": list(getattr(cfg, "alphabets", None) or [])}
    for key in ("val_string_accuracy", "created", "kdetect_version"):
        if key in training and isinstance(training[key], (str, int, float)):
            facts[f"training_{key}"] = training[key]
    return facts


def _json_error(status: int, code: str, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(config: ServeConfig | None = None, solver: Solver | None = None):
    """The ASGI app. The model loads at start-up, so the first request does not pay for it."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    config = config or ServeConfig()
    solver = solver or Solver(config.model)
    batcher = Batcher(solver, config)
    in_flight = 0
    facts: dict = {}

    async def guarded(request: Request, handler) -> JSONResponse:
        nonlocal in_flight
        started = time.perf_counter()
        try:
            _check_key(request, config.api_key)
            if in_flight >= config.max_in_flight:
                raise RequestError(429, "busy", f"the server holds {config.max_in_flight} requests already; "
                                                "retry in a moment")
            in_flight += 1
            try:
                body = await _body(request, config.max_body_bytes)
                answer = await handler(request, body)
            finally:
                in_flight -= 1
        except RequestError as err:
            return _json_error(err.status, err.code, err.message)
        except LengthError as err:
            return _json_error(400, "bad_length", str(err))
        except InvalidImageError as err:
            return _json_error(422, "not_an_image", str(err))
        except ConfigError as err:
            return _json_error(400, "bad_field", str(err))
        except Exception as err:  # noqa: BLE001 - kdetect's own failure: said so, and the server goes on
            return _json_error(500, "internal", f"kdetect failed on this request ({type(err).__name__}); it keeps "
                                                "serving")
        answer["ms"] = round((time.perf_counter() - started) * 1000, 2)
        return JSONResponse(answer)

    async def solve_one(request: Request, body: bytes) -> dict:
        data, options = _one_image(request, body)
        (reading,) = await batcher.read([Job(data, *options)])
        return reading_json(reading)

    async def solve_many(request: Request, body: bytes) -> dict:
        images, (length, symbols) = _many_images(request, body, config.max_batch_images)
        try:
            readings = await batcher.read([Job(d, length, symbols) for d in images])
        except InvalidImageError as err:
            # Which of the images: the error is the first failed one's, and each names no index.
            raise RequestError(422, "not_an_image", f"one of the images is unreadable: {err}") from None
        return {"results": [reading_json(r) for r in readings]}

    async def solve(request: Request) -> JSONResponse:
        return await guarded(request, solve_one)

    async def solve_batch(request: Request) -> JSONResponse:
        return await guarded(request, solve_many)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def model(request: Request) -> JSONResponse:
        async def answer(request: Request, body: bytes) -> dict:
            return dict(facts)

        return await guarded(request, answer)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return _json_error(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}; the API is "
                                                  "POST /solve, POST /solve/batch, GET /health, GET /model")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        solver.load()
        facts.update(model_facts(solver))
        batcher.start()
        yield
        await batcher.stop()

    routes = [Route("/solve", solve, methods=["POST"]), Route("/solve/batch", solve_batch, methods=["POST"]),
              Route("/health", health, methods=["GET"]), Route("/model", model, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error})


def app_from_environment():
    """The app of a uvicorn worker process: its ServeConfig comes as JSON in $KDETECT_SERVE_CONFIG."""
    return create_app(ServeConfig.from_dict(json.loads(os.environ.get(CONFIG_ENV, "{}"))))


def serve_config(model: str | Path | None = None, api_key: str | None = None, **limits) -> ServeConfig:
    """A ServeConfig; the API key, where not given, from $KDETECT_API_KEY (an empty one: none)."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    model = str(Path(model).resolve()) if model else None
    if model is not None:
        package_kind(model)  # a wrong --model is refused now, not in every worker
    config = ServeConfig(model=model, api_key=key, **limits)
    config.validate()
    return config


def run(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, log_level: str = "warning",
        ready=None) -> None:
    """Serve until interrupted. With workers > 1 each worker is a process of its own (uvicorn's)
    with its own copy of the model, its network on cores // workers threads."""
    import uvicorn

    from kdetect.serving.lite import default_threads

    options = {"host": host, "port": port, "log_level": log_level, "access_log": False,
               "timeout_graceful_shutdown": 5}
    if workers > 1:
        os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
        os.environ.setdefault("KDETECT_THREADS", str(max(1, default_threads() // workers)))
        uvicorn.run("kdetect.serving.server:app_from_environment", factory=True, workers=workers, **options)
    else:
        uvicorn.run(create_app(config), **options)


def _check_key(request, key: str | None) -> None:
    if key is None:
        return
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    # compare_digest: how long a wrong key took to refuse says nothing about the right one.
    if given is None or not hmac.compare_digest(given.encode(), key.encode()):
        raise RequestError(401, "unauthorized", "this server needs its API key, as the X-API-Key header or "
                                                "\"Authorization: Bearer <key>\"")


async def _body(request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as it is known to pass limit bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise RequestError(413, "too_large", f"the body has {int(declared):,} bytes; this server takes at most "
                                                 f"{limit:,} (captchas are a few kB)")
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "too_large", f"the body passes {limit:,} bytes, the most this server takes")
        parts.append(chunk)
    return b"".join(parts)


def _media_type(request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _one_image(request, body: bytes) -> tuple[bytes, tuple[int | None, str | None]]:
    """A /solve request's image bytes and (length, symbols)."""
    kind = _media_type(request)
    if kind == "application/json":
        data = _json_object(body, {"image", "length", "symbols"})
        if "image" not in data:
            raise RequestError(400, "bad_field", "the JSON object needs \"image\": the image as base64")
        return _base64(data["image"], "image"), _options(data)
    if kind == "multipart/form-data":
        files, fields = _multipart(request, body, 8)
        if len(files) != 1:
            raise RequestError(400, "bad_field", f"send one image file to /solve (this form has {len(files)}); "
                                                 "several go to /solve/batch")
        return files[0], _options(fields)
    if not body:
        raise RequestError(400, "no_image", "the body is empty; send the image as the body, as a multipart file "
                                            "or as JSON {\"image\": \"<base64>\"}")
    return body, _options(dict(request.query_params))


def _many_images(request, body: bytes, most: int) -> tuple[list[bytes], tuple[int | None, str | None]]:
    """A /solve/batch request's images and (length, symbols)."""
    kind = _media_type(request)
    if kind == "application/json":
        data = _json_object(body, {"images", "length", "symbols"})
        images = data.get("images")
        if not isinstance(images, list) or not images:
            raise RequestError(400, "bad_field", "the JSON object needs \"images\": a list of base64 images")
        if len(images) > most:
            raise RequestError(413, "too_many_images", f"{len(images)} images; one request takes at most {most}")
        return [_base64(im, f"images[{i}]") for i, im in enumerate(images)], _options(data)
    if kind == "multipart/form-data":
        files, fields = _multipart(request, body, most)
        if not files:
            raise RequestError(400, "no_image", "the form holds no image file")
        return files, _options(fields)
    raise RequestError(415, "unsupported_media_type", "send a batch as multipart/form-data files or as JSON "
                                                      "{\"images\": [\"<base64>\", ...]}")


def _json_object(body: bytes, known: set[str]) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, "bad_json", f"the body is not JSON ({err})") from None
    if not isinstance(data, dict):
        raise RequestError(400, "bad_json", f"the body must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - known)
    if unknown:
        raise RequestError(400, "bad_field", f"unknown keys {unknown}; known: {sorted(known)}")
    return data


def _base64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(400, "bad_base64", f"{name} must be a base64 string, not {type(value).__name__}")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # a data: URL, as a browser's FileReader gives it
    try:
        data = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise RequestError(400, "bad_base64", f"{name} is not valid base64 ({err})") from None
    if not data:
        raise RequestError(400, "no_image", f"{name} is empty")
    return data


def _multipart(request, body: bytes, most: int) -> tuple[list[bytes], dict[str, str]]:
    """The form's files (in order) and text fields, parsed from the already bounded body."""
    from python_multipart.multipart import parse_options_header
    from python_multipart.multipart import MultipartParser

    _, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestError(400, "bad_multipart", "the multipart body has no boundary")
    parts: list[dict] = []
    current: dict = {}

    def on_part_begin():
        current.clear()
        current.update(headers={}, data=[], field=b"", value=b"")

    def on_header_field(data, start, end):
        current["field"] += data[start:end]

    def on_header_value(data, start, end):
        current["value"] += data[start:end]

    def on_header_end():
        current["headers"][current["field"].lower()] = current["value"]
        current["field"], current["value"] = b"", b""

    def on_part_data(data, start, end):
        current["data"].append(data[start:end])

    def on_part_end():
        parts.append(dict(current))
        if len(parts) > most + 8:
            raise RequestError(413, "too_many_images", f"the form has more than {most} images, the most one "
                                                       "request takes")

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_part_data": on_part_data, "on_part_end": on_part_end}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except RequestError:
        raise
    except Exception as err:  # noqa: BLE001 - the parser raises several kinds on a malformed body
        raise RequestError(400, "bad_multipart", f"the multipart body is malformed ({err})") from None
    files, fields = [], {}
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        value = b"".join(part["data"])
        if b"filename" in disposition:
            files.append(value)
        elif name in ("length", "symbols"):
            fields[name] = value.decode("utf-8", "replace")
        elif name in ("image", "images", "file"):
            files.append(value)  # a file sent without a file name (curl -F image=<file.jpg)
        else:
            raise RequestError(400, "bad_field", f"unknown form field {name!r}; known: image (files), length, "
                                                 "symbols")
    if len(files) > most:
        raise RequestError(413, "too_many_images", f"{len(files)} images; one request takes at most {most}")
    return files, fields


def _options(data: dict) -> tuple[int | None, str | None]:
    """(length, symbols) from a request's JSON, form fields or query, checked."""
    length, symbols = data.get("length"), data.get("symbols")
    if isinstance(length, str):
        if not length.strip().isdigit():
            raise RequestError(400, "bad_field", f"length must be a positive whole number, not {length!r}")
        length = int(length)
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= 64):
        raise RequestError(400, "bad_field", f"length must be a whole number of characters from 1 to 64, not "
                                             f"{length!r}")
    if symbols is not None and (not isinstance(symbols, str) or not 1 <= len(symbols) <= 256):
        raise RequestError(400, "bad_field", f"symbols must be a non-empty string of the characters the captchas "
                                             f"use, not {symbols!r}")
    if symbols is not None:
        symbols = "".join(sorted(set(symbols)))  # one reader for every spelling of the same set
    return length, symbols
