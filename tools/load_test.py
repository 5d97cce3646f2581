#!/usr/bin/env python3
"""Load-test `kdetect serve`: start a server on 127.0.0.1 (or use --url), send it labelled
captchas from many concurrent clients, and print throughput, latency and errors.

    python tools/load_test.py [--requests 1000] [--clients 32] [--time-limit 120] [--workers 1]
                              [--images ../shared/realval/gnuboard5] [--url http://127.0.0.1:8000]

Bounded: it stops after --requests answers or --time-limit seconds, whichever comes first, and
stops the server it started. Each client holds one keep-alive connection and sends the next
request when the last is answered (POST /solve, the raw image as the body). The client side is
plain asyncio sockets, not an HTTP library: on a 2-core machine the load generator shares the
cores with the server, and a heavier client would measure itself. An error is any answer but
200, or a connection that failed; a wrong answer (read text against labels.tsv) is counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit


def labelled(folders: list[Path]) -> list[tuple[bytes, str]]:
    """(image bytes, answer) of folders with labels.tsv (kdetect eval's format), interleaved, so
    that every stretch of requests holds captchas of every folder."""
    from kdetect.serving.evaluate import read_labels

    sets = [[(path.read_bytes(), text) for path, text in read_labels(folder)] for folder in folders]
    return [item for group in zip(*sets) for item in group]


def realval_folders() -> list[Path]:
    from kdetect.presets import realval_dir

    root = realval_dir()
    return sorted(p for p in root.iterdir() if (p / "labels.tsv").is_file()) if root.is_dir() else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`kdetect serve` in a child process on a free port of 127.0.0.1; stopped on exit."""

    def __init__(self, workers: int = 1, model: str | None = None, api_key: str | None = None,
                 extra: list[str] | None = None, startup_s: float = 120):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "kdetect.cli", "serve", "--port", str(self.port), "--workers", str(workers),
                   *(["--model", model] if model else []), *(extra or [])]
        env = {**os.environ, **({"KDETECT_API_KEY": api_key} if api_key else {})}
        # A file, not a pipe: a pipe nobody reads would stop the server once it filled.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"kdetect serve exited: {self.log.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"kdetect serve did not answer /health within {startup_s:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_) -> None:
        self.stop()


async def _client(host: str, port: int, path: str, items, next_index, deadline: float, headers: bytes,
                  record) -> None:
    reader = writer = None
    while (i := next_index()) is not None and time.monotonic() < deadline:
        data, truth = items[i % len(items)]
        request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
                   f"Content-Length: {len(data)}\r\n").encode() + headers + b"\r\n" + data
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), max(0.1, deadline - time.monotonic()))
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
            body = await reader.readexactly(length)
            if any(line.lower() == "connection: close" for line in lines):
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, StopIteration,
                asyncio.LimitOverrunError) as err:
            record(time.perf_counter() - start, None, f"{type(err).__name__}: {err}"[:200], truth)
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        record(time.perf_counter() - start, status, body, truth)
    if writer is not None:
        writer.close()


def run_load(url: str, items: list[tuple[bytes, str]], requests: int = 1000, clients: int = 32,
             time_limit: float = 120, api_key: str | None = None) -> dict:
    """Send `requests` POST /solve from `clients` concurrent connections (or stop at time_limit
    seconds); -> counts, throughput and latency percentiles."""
    parts = urlsplit(url)
    latencies, errors, wrong = [], [], 0
    sent = 0

    def next_index() -> int | None:
        nonlocal sent
        if sent >= requests:
            return None
        sent += 1
        return sent - 1

    def record(seconds: float, status: int | None, body, truth: str) -> None:
        nonlocal wrong
        latencies.append(seconds)
        if status != 200:
            errors.append(f"{status}: {body[:200]!r}" if status else body)
            return
        if json.loads(body)["text"] != truth:
            wrong += 1

    headers = f"X-API-Key: {api_key}\r\n".encode() if api_key else b""

    async def main() -> float:
        deadline = time.monotonic() + time_limit
        start = time.perf_counter()
        await asyncio.gather(*(_client(parts.hostname, parts.port or 80, "/solve", items, next_index, deadline,
                                       headers, record) for _ in range(clients)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    ms = sorted(s * 1000 for s in latencies)
    done = len(latencies)
    return {"requests": done, "clients": clients, "seconds": round(elapsed, 2), "errors": len(errors),
            "error_examples": errors[:5], "wrong_answers": wrong,
            "throughput": round(done / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(statistics.median(ms), 2) if ms else None,
            "p99_ms": round(ms[min(done - 1, int(0.99 * done))], 2) if ms else None,
            "max_ms": round(ms[-1], 2) if ms else None}


def report(result: dict) -> str:
    return (f"{result['requests']} requests from {result['clients']} clients in {result['seconds']} s: "
            f"{result['throughput']} requests/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
            f"max {result['max_ms']} ms, {result['errors']} errors, {result['wrong_answers']} wrong answers")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=120, help="seconds of load at most")
    parser.add_argument("--workers", type=int, default=1, help="server workers (when this script starts it)")
    parser.add_argument("--model", help="model package the server reads with (default: the shipped one)")
    parser.add_argument("--images", type=Path, nargs="+", default=realval_folders(),
                        help="folders of captchas with labels.tsv (default: every ../shared/realval folder)")
    parser.add_argument("--url", help="load an already running server instead of starting one")
    parser.add_argument("--api-key", help="the server's API key, if it has one")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args()
    if not args.images:
        parser.error("no labelled captchas: give --images FOLDER (images with a labels.tsv)")
    items = labelled(args.images)
    if args.url:
        result = run_load(args.url, items, args.requests, args.clients, args.time_limit, args.api_key)
    else:
        with Server(args.workers, args.model, args.api_key) as server:
            result = run_load(server.url, items, args.requests, args.clients, args.time_limit, args.api_key)
    result["workers"] = None if args.url else args.workers
    print(json.dumps(result) if args.json else report(result))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
