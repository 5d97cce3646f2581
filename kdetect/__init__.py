"""kdetect: read KCAPTCHA-family captchas of any length.

    from kdetect import solve
    solve("captcha.jpg")  # -> "770610"
"""

from kdetect.errors import ConfigError, DatasetError, InvalidImageError, KdetectError, LengthError, RendererError
from kdetect.readings import Glyph, Reading
from kdetect.serving.solver import Solver, solve
from kdetect.version import __version__

__all__ = ["ConfigError", "DatasetError", "Glyph", "InvalidImageError", "KdetectError", "LengthError", "Reading",
           "RendererError", "Solver", "solve", "__version__"]
