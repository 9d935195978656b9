"""Which model ``ntdm infer`` uses when ``--model`` is not given, and the per-user default model.

The model is taken from the first of these that is set (:data:`SOURCES`):

1. ``--model PATH`` on the command line;
2. the environment variable ``NTDM_MODEL``;
3. the config key ``infer.model`` (``--config FILE`` or ``--set infer.model=PATH``);
4. the per-user default, set by ``ntdm train-textures --set-default``, ``ntdm models --set-default PATH``
   and ``make demo``, stored in the user's config folder (:func:`user_config_dir`), never in the
   repository.

A source that is set but names a missing file is an error (it does not fall through to the next
one): the user asked for that model. Only the stdlib and yaml are imported, so this stays cheap.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, Optional

import yaml

from ntdm_cli.errors import NtdmUsageError

ENV_VAR = "NTDM_MODEL"
#: the sources in the order they are tried
SOURCES = ("--model", ENV_VAR, "config infer.model", "user default")
#: one line telling a user without any model how to get one
HOW_TO_GET_ONE = ("train one with `make demo` (sets it as the default), or `ntdm train-textures ... -o model.h5 "
                  "--set-default`; or pass --model PATH / set NTDM_MODEL")


def user_config_dir(platform: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> Path:
    """The user's ntdm config folder, following the platform's conventions:
    ``%APPDATA%\\ntdm`` on Windows, ``~/Library/Application Support/ntdm`` on macOS, and
    ``$XDG_CONFIG_HOME/ntdm`` (``~/.config/ntdm`` when unset or not absolute) elsewhere."""
    platform = sys.platform if platform is None else platform
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if platform.startswith("win"):
        appdata = env.get("APPDATA")
        return (Path(appdata) if appdata else home / "AppData" / "Roaming") / "ntdm"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "ntdm"
    xdg = env.get("XDG_CONFIG_HOME", "")
    return (Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config") / "ntdm"


def default_file() -> Path:
    """The YAML file holding the per-user default model (``model: /abs/path.h5``, ``set_at``)."""
    return user_config_dir() / "default_model.yaml"


def read_user_default() -> Optional[Path]:
    """The per-user default model path (absolute), or None when none is set. A damaged file is an
    error naming it."""
    f = default_file()
    if not f.is_file():
        return None
    try:
        data = yaml.safe_load(f.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise NtdmUsageError(f"{f}: cannot read the default-model file ({exc.__class__.__name__}); "
                             f"set it again with `ntdm models --set-default PATH`")
    model = data.get("model") if isinstance(data, dict) else None
    return Path(model) if model else None


def set_user_default(model: str | os.PathLike) -> Path:
    """Make ``model`` (an existing model artifact) the per-user default; returns its absolute path.
    Written to a temp file and renamed into place."""
    from ntdm_cli.artifacts import open_artifact

    path = Path(model).expanduser()
    if not path.is_file():
        raise NtdmUsageError(f"--set-default {model}: no such file")
    with open_artifact(path, "model"):  # refuses a deformer / predictions artifact with one line
        pass
    path = path.resolve()
    f = default_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.tmp")
    tmp.write_text(yaml.safe_dump({"model": str(path), "set_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
    os.replace(tmp, f)
    return path


def clear_user_default() -> bool:
    """Remove the per-user default; True when there was one."""
    f = default_file()
    if f.is_file():
        f.unlink()
        return True
    return False


@dataclass
class ModelChoice:
    """A model path and where it came from (one of :data:`SOURCES`); ``path`` is None when no source is set."""

    path: Optional[Path]
    source: str
    where: str = ""  # for the user default: the file it is stored in

    def describe(self) -> str:
        if self.path is None:
            return "no model"
        return f"{self.path} ({self.source}{': ' + self.where if self.where else ''})"


def candidates(cli: Optional[str | os.PathLike] = None, config_value: str = "",
               environ: Optional[Mapping[str, str]] = None) -> Iterator[ModelChoice]:
    """Every source in :data:`SOURCES` order with its value (``path`` None when unset). Lazy: the
    user default is read only when the sources before it have been consumed."""
    env = os.environ if environ is None else environ
    for source, value in zip(SOURCES[:3], (cli, env.get(ENV_VAR) or None, config_value or None)):
        yield ModelChoice(Path(value).expanduser() if value else None, source)
    yield ModelChoice(read_user_default(), SOURCES[3], str(default_file()))


def resolve_model(cli: Optional[str | os.PathLike] = None, config_value: str = "",
                  environ: Optional[Mapping[str, str]] = None) -> ModelChoice:
    """The model ``ntdm infer`` uses: the first set source of :data:`SOURCES`. Raises
    :class:`NtdmUsageError` (exit 2) with one line when none is set, or when the chosen one names a
    missing file or a folder."""
    for c in candidates(cli, config_value, environ):
        if c.path is None:
            continue
        if not c.path.exists():
            if c.source == "user default":
                raise NtdmUsageError(f"the default model {c.path} no longer exists (set in {c.where}); "
                                     f"train a new one with `make demo`, or make another model the default with "
                                     f"`ntdm models --set-default PATH`")
            raise NtdmUsageError(f"{_given_as(c)}: no such file")
        if c.path.is_dir():
            raise NtdmUsageError(f"{_given_as(c)}: is a folder, expected a model file (.h5)")
        return c
    raise NtdmUsageError(f"no model: {HOW_TO_GET_ONE}")


def _given_as(c: ModelChoice) -> str:
    """How the user wrote the choice: ``--model X``, ``NTDM_MODEL=X`` or ``infer.model=X``."""
    return {"--model": f"--model {c.path}", ENV_VAR: f"{ENV_VAR}={c.path}"}.get(c.source, f"infer.model={c.path}")


@dataclass
class SourceRow:
    """One line of ``ntdm models``: a source, its value and its state (``unset``, ``set``, ``used``,
    ``missing``: names a file that does not exist)."""

    source: str
    path: Optional[Path]
    state: str
    where: str = ""


def model_report(config_value: str = "", environ: Optional[Mapping[str, str]] = None) -> list[SourceRow]:
    """Every source except ``--model`` with its value and state, the one ``ntdm infer`` would use marked
    ``used`` (none when the first set source names a missing file)."""
    rows, chosen = [], False
    for c in candidates(None, config_value, environ):
        if c.source == "--model":
            continue
        if c.path is None:
            state = "unset"
        elif not c.path.is_file():
            state = "missing"
            chosen = True  # infer stops at this source with an error
        else:
            state = "set" if chosen else "used"
            chosen = True
        rows.append(SourceRow(c.source, c.path, state, c.where))
    return rows
