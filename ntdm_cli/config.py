"""Configuration: dataclass sections, YAML files and dotted overrides (``--set section.key=value``).

Each stage declares its section with :func:`section`; a command resolves the sections it uses with
:meth:`ConfigStore.get`, and the YAML of every resolved section is stored in the artifacts it writes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Type, TypeVar

import yaml

from ntdm_cli.errors import ConfigError

_SECTIONS: dict[str, type] = {}
C = TypeVar("C")


def section(name: str):
    """Class decorator registering a dataclass as config section ``name``."""

    def wrap(cls: Type[C]) -> Type[C]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"config section {name!r} must be a dataclass")
        _SECTIONS[name] = cls
        cls.__ntdm_section__ = name  # type: ignore[attr-defined]
        return cls

    return wrap


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["infer.steps=300", "train.lr=1e-4"]`` -> ``{"infer": {"steps": 300}, "train": {...}}``.

    Values are parsed as YAML scalars/lists (``true``, ``1e-4``, ``[1, 2]``)."""
    tree: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: the key must be section.key, got {key!r}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.__class__.__name__})")
        tree.setdefault(parts[0], {})[parts[1]] = parsed
    return tree


def load_yaml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: a config file maps section names to mappings of keys")
    return data


def _coerce(value: Any, default: Any, where: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, bool):  # YAML 1.1 reads off/on/no/yes as booleans
            return "on" if value else "off"
        return str(value)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return type(default)(value)
    return value


class ConfigStore:
    """Raw config (file + overrides) and the sections resolved from it by the running command."""

    def __init__(self, path: Path | None = None, overrides: list[str] | None = None):
        raw: dict[str, dict[str, Any]] = load_yaml(path) if path else {}
        for sec, values in parse_overrides(overrides or []).items():
            raw.setdefault(sec, {}).update(values)
        self.raw = raw
        self.source = str(path) if path else None
        self.resolved: dict[str, Any] = {}

    def get(self, name: str, cls: Type[C] | None = None) -> C:
        """The section ``name`` with defaults, file values and overrides applied (validated)."""
        if name in self.resolved:
            return self.resolved[name]
        cls = cls or _SECTIONS.get(name)  # type: ignore[assignment]
        if cls is None:
            raise ConfigError(f"unknown config section {name!r}")
        values = dict(self.raw.get(name, {}))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(
                f"config section {name!r} has no key {unknown[0]!r} (known: {', '.join(sorted(fields))})"
            )
        default = cls()
        kwargs = {k: _coerce(v, getattr(default, k), f"{name}.{k}") for k, v in values.items()}
        obj = dataclasses.replace(default, **kwargs)
        check = getattr(obj, "validate", None)
        if check is not None:
            check()
        self.resolved[name] = obj
        return obj

    def set(self, name: str, obj: Any) -> None:
        """Record a section built in code (e.g. from CLI options) so that it is stored with artifacts."""
        self.resolved[name] = obj

    def unused_sections(self) -> list[str]:
        return sorted(set(self.raw) - set(self.resolved))

    def to_yaml(self) -> str:
        data = {k: dataclasses.asdict(v) for k, v in sorted(self.resolved.items())}
        return yaml.safe_dump(data, sort_keys=True)
