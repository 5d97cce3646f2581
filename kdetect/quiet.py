"""Keeping TensorFlow's native start-up logs out of the command line's output.

TensorFlow, XLA and TFLite write from C++ straight to file descriptor 2, and some of it (CUDA
plugin registration, "All log messages before absl::InitializeLog()") is written before any log
level applies, so the CLI holds fd 2 aside while the native libraries start.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

# Set before TensorFlow is imported: it reads them once, at load.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "3"}


def quiet_environment() -> None:
    """Ask the native libraries for errors only, where the user has not chosen a level."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def native_stderr_held() -> Iterator[None]:
    """fd 2 goes to a scratch file while the block runs; if the block fails, what was held is
    written back first, so a real failure keeps its diagnostics."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                os.write(2, held.read()[-20_000:])


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and find its devices with the start-up logs held back, then keep its
    Python-side loggers to errors."""
    with native_stderr_held():
        import absl.logging
        import tensorflow as tf

        tf.config.list_physical_devices()
    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
