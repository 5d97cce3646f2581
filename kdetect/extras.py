"""The optional parts of the install: which extra brings what, and the error that names it.

The plain install (`pip install kdetect`) reads captchas with numpy, pillow and ai-edge-litert;
TensorFlow and the rest of the training stack come with the train extra.
"""

from __future__ import annotations

import importlib.util

from kdetect.errors import MissingExtraError

TRAIN = "train"


def installed(module: str) -> bool:
    """Whether module can be imported, found without importing it (TensorFlow takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str | None, what: str) -> None:
    """Raise MissingExtraError naming the pip command when module is not installed (extra None:
    a dependency of the plain install, missing from a broken or --no-deps one)."""
    if not installed(module):
        if extra is None:
            raise MissingExtraError(f"{what} needs {module}, a dependency of kdetect that is missing here; install "
                                    "it with: pip install kdetect")
        raise MissingExtraError(f"{what} needs {module}, which the plain install leaves out; install it with: "
                                f"pip install \"kdetect[{extra}]\"")
