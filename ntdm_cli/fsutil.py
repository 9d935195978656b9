"""File-system helpers shared by every writer: the atomic writer and the checks on output paths.

Every output option goes through :func:`check_output` (file) or :func:`make_output_folder` (folder)
before any computation, so that a wrong output is refused at once, naming the option; every file is
written through :func:`atomic_write`, so that a failure (full disk, Ctrl-C, SIGTERM) leaves the target
either complete or untouched and no temporary file behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Tuple

from ntdm_cli.errors import MissingInputError, NtdmError, NtdmUsageError, short

#: errno values that mean "the file system is full"
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
#: a temp file whose writer cannot be identified (no pid in its name) is stale after this many seconds
_UNOWNED_STALE_S = 3600.0

#: (option or label, path) of an input, for the "output is an input" check
Input = Tuple[str, Optional[os.PathLike]]


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def umask_mode(base: int = 0o666) -> int:
    """``base`` with the process umask applied: the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


_SWEPT: set[str] = set()  # folders already cleaned by this process


def _stale(tmp: Path) -> bool:
    """A temp file ``.NAME.<pid>-<random>.tmp`` whose writer is not running (unnamed ones: older
    than an hour)."""
    middle = tmp.name[1: -len(".tmp")].rsplit(".", 1)[-1]
    pid_text = middle.split("-", 1)[0]
    if "-" in middle and pid_text.isdigit():
        return int(pid_text) != os.getpid() and not _pid_alive(int(pid_text))
    return time.time() - tmp.stat().st_mtime > _UNOWNED_STALE_S


def remove_stale_temps(folder: Path, force: bool = False) -> int:
    """Delete the temp files ``.NAME.*.tmp`` in ``folder`` that killed writers left behind (see
    :func:`_stale`); once per folder and process unless ``force``. Returns how many were removed."""
    key = str(folder.resolve())
    if key in _SWEPT and not force:
        return 0
    _SWEPT.add(key)
    removed = 0
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(".tmp")]
    except OSError:
        return 0
    for e in entries:
        try:
            if e.is_file(follow_symlinks=False) and _stale(Path(e.path)):
                os.unlink(e.path)
                removed += 1
        except OSError:
            pass
    return removed


def write_failure(path: os.PathLike, exc: OSError) -> NtdmError:
    """The one-line error for an OSError while writing ``path`` (full disk, permissions, ...)."""
    code = exc.errno
    if code is None and "errno = 28" in str(exc):  # HDF5 wraps the errno into its message
        code = errno.ENOSPC
    if code in _FULL:
        return NtdmError(f"{short(path)}: no space left on the device (nothing written)")
    reason = exc.strerror or (str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
    return NtdmError(f"{short(path)}: cannot write ({short(reason, 120)})")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file in the target folder, then rename it to ``path``.

    The temp file is ``.NAME.<pid>-<random>.tmp`` (unique per process, so concurrent writers never
    share one), gets the umask's permissions like any new file, and is removed on any failure,
    Ctrl-C or SIGTERM, so ``path`` is either complete or untouched. Stale temp files of ``path`` left
    by killed writers in the folder are removed first. An OSError (full disk, read-only folder) becomes one
    :class:`NtdmError` line naming ``path``."""
    path = Path(path)
    folder = _folder_of(path)
    if not folder.is_dir():
        raise NtdmError(f"{short(path)}: folder {short(folder)} does not exist")
    remove_stale_temps(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise write_failure(path, exc) from exc
    try:
        os.close(fd)
        os.chmod(tmp, umask_mode())  # mkstemp makes 0600
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise write_failure(path, exc) from exc
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of ``data`` to ``path``."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


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


def same_path(a: os.PathLike, b: os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file or folder (links and ``..`` resolved)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _refuse_inputs(path: Path, option: str, inputs: Iterable[Input]) -> None:
    for label, p in inputs:
        if p is not None and same_path(path, p):
            raise NtdmUsageError(f"{option} {short(path)}: is the input {label} {short(p)}; "
                                 f"writing it would destroy the input, choose another output")


def _probe_writable(folder: Path, path: Path, option: str) -> None:
    """Create and delete a file in ``folder``: the only test that also holds for root, read-only
    mounts and full disks."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".ntdm-probe.", dir=folder)
    except OSError as exc:
        why = "no space left on the device" if exc.errno in _FULL else (exc.strerror or "not writable")
        raise NtdmUsageError(f"{option} {short(path)}: cannot write into folder {short(folder)} ({why})")
    os.close(fd)
    os.unlink(probe)


def check_output(path: os.PathLike, option: str, inputs: Iterable[Input] = ()) -> Path:
    """Check, before any computation, that the file ``path`` can be written: not one of ``inputs``
    (``(label, path)`` pairs), not a folder, its folder existing and writable. Usage errors name
    ``option``."""
    path = Path(path)
    _refuse_inputs(path, option, inputs)
    if path.is_dir():
        raise NtdmUsageError(f"{option} {short(path)}: is a folder, expected a file name")
    folder = _folder_of(path)
    if not folder.is_dir():
        raise NtdmUsageError(f"{option} {short(path)}: folder {short(folder)} does not exist")
    _probe_writable(folder, path, option)
    return path


def check_output_folder(path: os.PathLike, option: str, inputs: Iterable[Input] = ()) -> Path:
    """Like :func:`check_output` for an output folder (created later by :func:`make_output_folder`):
    not a file, not an input, its parent existing, itself (or its parent) writable."""
    path = Path(path)
    _refuse_inputs(path, option, inputs)
    if path.exists() and not path.is_dir():
        raise NtdmUsageError(f"{option} {short(path)}: exists and is not a folder")
    parent = _folder_of(path)
    if not parent.is_dir():
        raise NtdmUsageError(f"{option} {short(path)}: folder {short(parent)} does not exist")
    _probe_writable(path if path.is_dir() else parent, path, option)
    return path


def make_output_folder(path: str | os.PathLike, option: str, inputs: Iterable[Input] = ()) -> Path:
    """Create the output folder ``path`` (its parent must exist); ``option`` names it in errors."""
    path = check_output_folder(path, option, inputs)
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise NtdmUsageError(f"{option} {short(path)}: cannot create the folder ({exc.strerror or exc})")
    return path


class FolderLock:
    """An exclusive advisory lock (flock) on a folder, held while a command writes into it; a second
    process is refused at once with one line instead of racing on the same files. Nothing is
    written to the folder; the lock goes away with the process. A context manager."""

    def __init__(self, folder: os.PathLike, option: str, what: str):
        self.folder, self.option, self.what = Path(folder), option, what
        self._fd: int | None = None

    def __enter__(self) -> "FolderLock":
        import fcntl

        fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise NtdmError(f"{self.option} {short(self.folder)}: another {self.what} is writing this folder; "
                            f"wait for it to finish or use another folder")
        except OSError:  # file systems without flock: no protection beyond the unique temp names
            pass
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
