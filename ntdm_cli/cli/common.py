"""State shared by the subcommands: global options, device, config, and error helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import typer

from ntdm_cli.config import ConfigStore
from ntdm_cli.errors import MissingInputError, NtdmUsageError, short
from ntdm_cli.fsutil import Input, check_output


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
    """``path`` if it is an existing file; else a usage error (exit 2) naming ``option``."""
    if not path.exists():
        raise MissingInputError(f"{option} {short(path)}: no such file")
    if path.is_dir():
        raise NtdmUsageError(f"{option} {short(path)}: is a folder, expected a file")
    return path


def existing_folder(path: Path, option: str) -> Path:
    """``path`` if it is an existing folder; else a usage error (exit 2) naming ``option``."""
    if not path.exists():
        raise MissingInputError(f"{option} {short(path)}: no such folder")
    if not path.is_dir():
        raise NtdmUsageError(f"{option} {short(path)}: is a file, expected a folder")
    return path


def output_file_ok(path: Path, option: str, inputs: Iterable[Input] = ()) -> Path:
    """Check the output file ``path`` before computing (see :func:`ntdm_cli.fsutil.check_output`)."""
    return check_output(path, option, inputs)
