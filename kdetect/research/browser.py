"""Drive the demo page in headless Chromium: what the browser tests and bench/bench_browser.py share.

Uses Debian's chromium through Python playwright (no `playwright install`: its own browser
download is not needed and often not possible). Local image files reach the page through a
routed URL, so the page reads them with the same fetch, <img> decoding and TF.js graph as a
user's file.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from kdetect.errors import KdetectError
from kdetect.serving.web import check_web, make_server

# --disable-dev-shm-usage: containers often give /dev/shm 64 MB, which Chromium outgrows.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]
FILES = "/__files__/"  # routed to local files, never served from disk


def chromium_path() -> str | None:
    """The system Chromium (KDETECT_CHROMIUM overrides), or None."""
    for candidate in (os.environ.get("KDETECT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class DemoPage:
    """The loaded demo page, ready to read images."""

    def __init__(self, page, base_url: str):
        self.page, self.base_url = page, base_url
        self._files: dict[str, Path] = {}
        page.route(f"**{FILES}*", self._serve_file)

    def _serve_file(self, route) -> None:
        path = self._files.get(route.request.url.rsplit("/", 1)[-1])
        if path is None:
            route.fulfill(status=404, body="not registered")
            return
        route.fulfill(path=str(path), content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @property
    def backend(self) -> str:
        return self.page.evaluate("window.kdetect.backend")

    def read_files(self, paths: Sequence[str | Path], chunk: int = 50) -> list[dict]:
        """{text, confidence, glyphs, ms} per image, read in the page one after another."""
        results = []
        for start in range(0, len(paths), chunk):
            urls = []
            for i, path in enumerate(paths[start:start + chunk], start):
                key = f"{i}{Path(path).suffix}"
                self._files[key] = Path(path)
                urls.append(FILES + key)
            results += self.page.evaluate(
                "async (urls) => { const out = []; for (const u of urls) out.push(await window.kdetect.readUrl(u)); return out; }",
                urls)
        return results

    def read_through_input(self, path: str | Path, timeout_ms: float = 30_000) -> str:
        """What a user does: pick the file in the file input and wait for the answer on the page."""
        self.page.set_input_files("#file", str(path))
        self.page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=timeout_ms)
        if self.page.evaluate("document.body.dataset.state") == "error":
            raise KdetectError(f"the page could not read {path}: {self.page.inner_text('#status')}")
        return self.page.inner_text("#answer")


@contextmanager
def open_demo(folder: Path, backend: str | None = None, timeout_ms: float = 60_000) -> Iterator[DemoPage]:
    """Serve folder on a free localhost port, open it in headless Chromium, wait for the model.
    backend forces a TF.js backend (wasm, webgl, cpu); by default the page picks."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise KdetectError("playwright is not installed: pip install -e '.[dev]' (it drives the system "
                           "Chromium; `playwright install` is not needed)") from None
    executable = chromium_path()
    if executable is None:
        raise KdetectError("Chromium was not found: apt-get install chromium (or set KDETECT_CHROMIUM)")
    check_web(folder)
    server = make_server(folder, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda err: errors.append(str(err)))
                base = f"http://127.0.0.1:{server.server_address[1]}/"
                page.goto(base + (f"?backend={backend}" if backend else ""))
                page.wait_for_function("['ready', 'error'].includes(document.body.dataset.state)", timeout=timeout_ms)
                if page.evaluate("document.body.dataset.state") == "error":
                    raise KdetectError(f"the demo page failed to start: {page.inner_text('#status')} {errors}")
                yield DemoPage(page, base)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
