"""JSON round trips for the frozen dataclass configs (models, training runs)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, ClassVar

from kdetect.errors import ConfigError


class JsonConfig:
    """Mixin for frozen dataclasses: to_json, from_dict and load, refusing unknown or missing keys
    with a message that names the known ones."""

    what: ClassVar[str] = "config"  # how error messages name this kind of config

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def convert(cls, data: dict[str, Any]) -> dict[str, Any]:
        """JSON values -> field values (lists to tuples, nested configs); the identity by default."""
        return data

    def validate(self) -> None:
        """Raise ConfigError for impossible values; nothing to check by default."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, dict):
            raise ConfigError(f"a {cls.what} must be a JSON object, not {type(data).__name__}")
        # A model config of another kind would otherwise fail on its unknown keys, which hides why.
        kind = getattr(cls, "kind", None)
        if kind is not None and data.get("kind", kind) != kind:
            raise ConfigError(f"this config describes a {data['kind']!r} model, not a {kind}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown {cls.what} keys {sorted(unknown)}; known: {sorted(known)}")
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if required - set(data):
            raise ConfigError(f"the {cls.what} needs {sorted(required - set(data))}")
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, value in data.items():
            if not _fits(value, fields[name]):
                raise ConfigError(f"{name} must be {_described(fields[name])}, not {value!r}")
        try:
            cfg = cls(**cls.convert(dict(data)))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"malformed {cls.what}: {err}") from None
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: str | Path):
        data = read_json(path, cls.what)
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


# A config is a few hundred bytes; one far larger is not a config, and is not read whole.
MAX_CONFIG_BYTES = 1 << 20


def read_json(path: str | Path, what: str = "config") -> Any:
    """The JSON value in a config file, read no further than MAX_CONFIG_BYTES."""
    try:
        with Path(path).open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is over {MAX_CONFIG_BYTES:,} bytes: not a kdetect config")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None


# The annotations of plain JSON values a config field may have; others (tuples, nested configs)
# are for convert() and validate() to check.
_PLAIN = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a string", "None": "null"}


def check_input_size(height: object, width: object, what: str, least: int = 16, most: int = 1024) -> None:
    """Refuse a network input size outside [least, most] per side: a model is built (and its
    memory taken) at that size, and a crafted package asking for 20000x20000 would take gigabytes."""
    for name, value in (("input_height", height), ("input_width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            raise ConfigError(f"{what} {name} must be a whole number of pixels from {least} to {most}, not {value!r}")


def _fits(value: object, annotation: object) -> bool:
    options = [a.strip() for a in str(annotation).split("|")]
    if not all(o in _PLAIN for o in options):
        return True
    for option in options:
        if option == "None" and value is None:
            return True
        if option == "bool" and isinstance(value, bool):
            return True
        if option == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        # Only finite numbers: JSON from Python may hold NaN or Infinity, which no setting means.
        if option == "float" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return True
        if option == "str" and isinstance(value, str):
            return True
    return False


def _described(annotation: object) -> str:
    return " or ".join(_PLAIN[a.strip()] for a in str(annotation).split("|"))
