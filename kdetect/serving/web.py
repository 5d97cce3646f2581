"""Serve the browser demo (web/) on localhost: the static page, TF.js from npm, the exported model.

Any static file server would do; this one checks first that the page has what it needs, so a
missing `npm ci` or a missing model export is named up front instead of as a broken page. A
folder given to serve is only served: npm runs in the project's own web/ alone, never elsewhere.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kdetect.errors import KdetectError

TFJS = Path("node_modules/@tensorflow/tfjs/dist/tf.min.js")
MODEL = Path("model/model.json")


def web_dir() -> Path:
    """web/ of the source checkout this package runs from."""
    folder = Path(__file__).resolve().parents[2] / "web"
    if not (folder / "index.html").is_file():
        raise KdetectError(f"the demo page is not at {folder}: `kdetect web` serves web/ of a source "
                           "checkout; clone the repository and install it with `pip install -e .`")
    return folder


def install_tfjs() -> Path:
    """`npm ci` in the project's own web/: the pinned TF.js from its package-lock.json, no CDN at
    page time. --ignore-scripts: installing runs no package's lifecycle scripts. Only ever there:
    `npm ci` in another folder would run whatever that folder's package.json says."""
    folder = web_dir()
    npm = shutil.which("npm")
    if npm is None:
        raise KdetectError(f"npm is not installed, and {folder / 'node_modules'} is missing: install Node "
                           "(`apt-get install nodejs npm`), or run `npm ci --ignore-scripts` in web/ elsewhere "
                           "and copy its node_modules")
    proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=folder,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise KdetectError(f"`npm ci` in {folder} failed: {proc.stderr.strip()[-1500:]}")
    return folder


def check_web(folder: Path) -> None:
    """Raise with the fix if the page would load without TF.js or without a model."""
    if not (folder / TFJS).is_file():
        raise KdetectError(f"TF.js is missing ({folder / TFJS}): kdetect installs it only into its own web/; "
                           f"install it into {folder} yourself (`npm ci --ignore-scripts` there, if you trust "
                           "its package.json), or serve web/ without --dir")
    if not (folder / MODEL).is_file():
        raise KdetectError(f"no exported model at {folder / MODEL}: run `kdetect export tfjs --out {folder / 'model'}`")


class _QuietHandler(SimpleHTTPRequestHandler):
    # Browsers treat a module script served as anything but JavaScript as an error.
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".mjs": "text/javascript", ".json": "application/json", ".bin": "application/octet-stream",
                      ".wasm": "application/wasm"}

    def end_headers(self):
        # Cross-origin isolation lets TF.js's WebAssembly backend use threads (SharedArrayBuffer).
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def make_server(folder: Path, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A static server rooted at folder (port 0: any free port; see server.server_address)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        raise KdetectError(f"cannot listen on {host}:{port} ({err.strerror}): pick another with --port") from err
