"""Configuration: dataclass sections, YAML files and dotted overrides (``--set section.key=value``).

Each stage declares its section with :func:`section`; a command resolves the sections it uses with
:meth:`ConfigStore.get`, and the YAML of every resolved section is stored in the artifacts it writes.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import math
from pathlib import Path
from typing import Any, Type, TypeVar

import yaml

from ntdm_cli.errors import ConfigError

_SECTIONS: dict[str, type] = {}
C = TypeVar("C")

#: the built-in sections and the module that declares each (imported only to check a section's keys)
BUILTIN_SECTIONS: dict[str, str] = {
    "deformer": "ntdm_cli.geometry.fit",
    "train": "ntdm_cli.train.settings",
    "infer": "ntdm_cli.infer.solver",
    "synth": "ntdm_cli.data.synth",
    "eval": "ntdm_cli.eval.report",
}


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``choices`` (difflib), or an empty string."""
    near = difflib.get_close_matches(str(name), sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


def section_class(name: str) -> type | None:
    """The dataclass of config section ``name`` (importing its module for a built-in one), or None."""
    if name not in _SECTIONS and name in BUILTIN_SECTIONS:
        importlib.import_module(BUILTIN_SECTIONS[name])
    return _SECTIONS.get(name)


def check_keys(name: str, keys, fields, where: str = "") -> None:
    """Refuse a key of section ``name`` that is not one of ``fields``, naming the nearest valid one."""
    unknown = sorted(set(keys) - set(fields))
    if unknown:
        key = unknown[0]
        raise ConfigError(f"{where}config section {name!r} has no key {key!r}{did_you_mean(key, fields)} "
                          f"(known: {', '.join(sorted(fields))})")


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
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
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
        origin = {sec: f"{path}: " for sec in raw}
        for sec, values in parse_overrides(overrides or []).items():
            raw.setdefault(sec, {}).update(values)
            origin[sec] = "--set: "
        self.raw = raw
        self.source = str(path) if path else None
        self.resolved: dict[str, Any] = {}
        self._check(origin)

    def _check(self, origin: dict[str, str]) -> None:
        """Every section and key of the file and the overrides must exist, whichever command runs:
        a typo is refused (exit 2, with the nearest valid name) instead of silently changing nothing."""
        known = set(BUILTIN_SECTIONS) | set(_SECTIONS)
        for name, values in self.raw.items():
            where = origin.get(name, "")
            if name not in known:
                raise ConfigError(f"{where}unknown config section {name!r}{did_you_mean(name, known)} "
                                  f"(sections: {', '.join(sorted(known))})")
            cls = section_class(name)
            if cls is not None:
                check_keys(name, values, [f.name for f in dataclasses.fields(cls)], where)
                default = cls()
                for key, value in values.items():  # types and finiteness now; ranges when resolved
                    _coerce(value, getattr(default, key), f"{where}{name}.{key}")

    def get(self, name: str, cls: Type[C] | None = None) -> C:
        """The section ``name`` with defaults, file values and overrides applied (validated)."""
        if name in self.resolved:
            return self.resolved[name]
        cls = cls or section_class(name)  # type: ignore[assignment]
        if cls is None:
            raise ConfigError(f"unknown config section {name!r}")
        values = dict(self.raw.get(name, {}))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        check_keys(name, values, fields)
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
