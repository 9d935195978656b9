"""File-system helpers shared by every writer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from ntdm_cli.errors import NtdmError


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in the target folder, then rename it to ``path``.

    A failure (or Ctrl-C) removes the temporary file, so ``path`` is either complete or untouched."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise NtdmError(f"{path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def make_output_folder(path: str | os.PathLike, option: str) -> Path:
    """Create the output folder ``path`` (its parent must exist); ``option`` names it in errors."""
    from ntdm_cli.errors import NtdmUsageError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NtdmUsageError(f"{option} {path}: exists and is not a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NtdmUsageError(f"{option} {path}: folder {parent} does not exist")
    path.mkdir(exist_ok=True)
    return path
