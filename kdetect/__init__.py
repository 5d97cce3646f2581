"""kdetect: read KCAPTCHA-family captchas of any length."""

from kdetect.errors import ConfigError, DatasetError, KdetectError, RendererError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DatasetError", "KdetectError", "RendererError", "__version__"]
