"""Errors kdetect raises on bad input; each message names the problem and the fix."""


class KdetectError(Exception):
    """Base class of every error kdetect raises on purpose."""


class RendererError(KdetectError):
    """PHP, GD or the KCAPTCHA renderer is missing or failed."""


class ConfigError(KdetectError):
    """A render, dataset or model configuration is invalid."""


class DatasetError(KdetectError):
    """A dataset on disk is missing, incomplete or does not match what was asked for."""


class InvalidImageError(KdetectError):
    """An input is not a readable image (missing, empty, corrupt, or of an unusable shape)."""


class LengthError(KdetectError):
    """A fixed-length model was asked for an answer length it was not built for."""


class OutputError(KdetectError):
    """An output folder holds something kdetect did not write, which it will not replace."""


class MissingExtraError(KdetectError):
    """What was asked needs a part of kdetect that this install left out (an extra, see kdetect/extras.py)."""
