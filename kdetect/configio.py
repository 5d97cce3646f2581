"""JSON round trips for the frozen dataclass configs (models, training runs)."""

from __future__ import annotations

import dataclasses
import json
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
        cfg = cls(**cls.convert(dict(data)))
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: str | Path):
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read {cls.what} {path}: {err}") from None
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
