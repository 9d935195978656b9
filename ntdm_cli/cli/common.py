"""State shared by the subcommands: global options, device, config, and error helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from ntdm_cli.config import ConfigStore
from ntdm_cli.errors import NtdmUsageError


@dataclass
class State:
    """Global options of one ``ntdm`` invocation (``ctx.obj``)."""

    device: str = "auto"
    verbose: bool = False
    config: ConfigStore = field(default_factory=ConfigStore)

    def torch_device(self) -> Any:
        """The torch.device for ``--device auto|cpu|cuda[:i]``."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NtdmUsageError(f"--device {self.device}: no CUDA device is available on this machine")
        return torch.device(self.device)


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # library use without the root callback
        obj = State()
        ctx.find_root().obj = obj
    return obj


def check_device_name(value: str) -> str:
    ok = value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
    if not ok:
        raise NtdmUsageError(f"--device {value!r}: expected auto, cpu, cuda or cuda:N")
    return value


def existing_file(path: Path, option: str) -> Path:
    if not path.exists():
        raise NtdmUsageError(f"{option} {path}: no such file")
    if path.is_dir():
        raise NtdmUsageError(f"{option} {path}: is a folder, expected a file")
    return path


def output_folder_ok(path: Path, option: str) -> Path:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NtdmUsageError(f"{option} {path}: folder {parent} does not exist")
    return path
