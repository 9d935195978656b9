"""State shared by the subcommands: global options, device, config, and error helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import typer

from ntdm_cli.config import ConfigStore
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.fsutil import Input, check_output, existing_file, existing_folder  # noqa: F401  (used by the commands)


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


def output_file_ok(path: Path, option: str, inputs: Iterable[Input] = ()) -> Path:
    """Check the output file ``path`` before computing (see :func:`ntdm_cli.fsutil.check_output`)."""
    return check_output(path, option, inputs)
