"""The only module that reads and writes HDF5.

Every artifact has root attributes ``kind`` (deformer | model | predictions | dataset-index | bench),
``schema_version``, ``ntdm_version``, ``created_by`` (the command line) and ``config`` (YAML text of
the resolved config). Data are nested groups of numpy arrays; strings are stored as UTF-8.
Writes go to a temporary file in the target folder and are renamed into place, so a crash never
leaves a half-written artifact. No pickle anywhere.
"""

from __future__ import annotations

import io
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import yaml

from ntdm_cli import __version__
from ntdm_cli.errors import ArtifactError, MissingArtifactError, short
from ntdm_cli.fsutil import atomic_write

#: Current schema version of each artifact kind. Bump when a reader could misread older files.
SCHEMA_VERSIONS: dict[str, int] = {
    "deformer": 1,
    "model": 1,
    "predictions": 1,
    "dataset-index": 1,
    "bench": 1,
}

_STR = h5py.string_dtype("utf-8")

#: the largest root attribute (characters or bytes) a reader accepts: real ones (the command line,
#: the config YAML) are a few kB; a larger one means a damaged or hostile file
MAX_ATTR_BYTES = 1 << 20


def command_line() -> str:
    """The command line of this process, as stored in ``created_by``."""
    prog = Path(sys.argv[0]).name if sys.argv else "python"
    if prog in ("__main__.py", "-c", ""):
        prog = "python -m ntdm_cli"
    return " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]])


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    if isinstance(value, str):
        return np.array(value, dtype=object)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(list(value), dtype=object)
    arr = np.asarray(value)
    if arr.dtype == object:
        raise ArtifactError(f"cannot store a value of type {type(value).__name__} in an artifact")
    return arr


def _write_group(group: h5py.Group, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        if "/" in key:
            raise ArtifactError(f"artifact key {key!r} must not contain '/'")
        if isinstance(value, Mapping):
            _write_group(group.create_group(key), value)
            continue
        arr = _to_numpy(value)
        if arr.dtype == object:
            group.create_dataset(key, data=arr, dtype=_STR)
        else:
            compress = arr.size >= 4096
            group.create_dataset(
                key, data=arr, compression="gzip" if compress else None, compression_opts=1 if compress else None
            )


def write_artifact(
    path: str | os.PathLike,
    kind: str,
    data: Mapping[str, Any],
    *,
    config_yaml: str = "",
    attrs: Mapping[str, Any] | None = None,
    created_by: str | None = None,
) -> Path:
    """Write ``data`` (nested mapping of arrays/tensors/strings) as an artifact of ``kind``.

    The file appears at ``path`` only once it is complete (temp file + rename)."""
    if kind not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ArtifactError(f"{short(path)}: folder {folder} does not exist")

    # HDF5 is built in memory and written with plain file I/O: on a full disk HDF5's own writes fail
    # in object destructors (a flood of "Exception ignored" lines, even a segfault), plain writes
    # raise one OSError that atomic_write turns into one line
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["kind"] = kind
        f.attrs["schema_version"] = SCHEMA_VERSIONS[kind]
        f.attrs["ntdm_version"] = __version__
        f.attrs["created_by"] = created_by if created_by is not None else command_line()
        f.attrs["config"] = config_yaml
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        _write_group(f, data)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


@dataclass
class Artifact:
    """An artifact read into memory: root attributes, parsed config and the nested data."""

    path: Path
    kind: str
    schema_version: int
    attrs: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        text = self.attrs.get("config", "") or ""
        try:
            return yaml.safe_load(text) or {}
        except yaml.YAMLError:
            raise ArtifactError(f"{short(self.path)}: the stored config is not valid YAML")

    def __getitem__(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("/"):
            if not isinstance(node, dict) or part not in node:
                raise ArtifactError(f"{short(self.path)}: {self.kind} artifact has no '{key}'")
            node = node[part]
        return node

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except ArtifactError:
            return default

    def __contains__(self, key: str) -> bool:
        return self.get(key, None) is not None


def _read_value(ds: h5py.Dataset) -> Any:
    if h5py.check_string_dtype(ds.dtype) is not None:
        value = ds.asstr()[()]
        if isinstance(value, np.ndarray):
            return [str(v) for v in value.tolist()]
        return str(value)
    return ds[()]


def _read_group(group: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in group.items():
        out[key] = _read_group(item) if isinstance(item, h5py.Group) else _read_value(item)
    return out


def _open(path: Path) -> h5py.File:
    try:
        exists = path.exists()
    except OSError as exc:  # a name too long, a loop of links
        raise MissingArtifactError(f"{short(path)}: not a usable path ({exc.strerror or exc.__class__.__name__})")
    if not exists:
        raise MissingArtifactError(f"{short(path)}: no such file")
    if path.is_dir():
        raise ArtifactError(f"{short(path)}: is a folder, expected an HDF5 artifact")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise ArtifactError(f"{short(path)}: not a readable HDF5 file (truncated or not an ntdm artifact)")


def _attr_size(value: Any) -> int:
    if isinstance(value, (str, bytes)):
        return len(value)
    return int(getattr(value, "nbytes", 0))


def read_attrs(f: h5py.File, path: Path) -> dict[str, Any]:
    """The root attributes (bytes decoded), each at most :data:`MAX_ATTR_BYTES`: a larger one (a
    100 MB ``created_by`` or ``config``) is refused with one line instead of being parsed or shown."""
    attrs: dict[str, Any] = {}
    for name in f.attrs:
        try:
            aid = f.attrs.get_id(name)
            if aid.get_storage_size() > MAX_ATTR_BYTES:
                raise ArtifactError(f"{short(path)}: attribute '{short(name, 60)}' is {aid.get_storage_size()} "
                                    f"bytes, more than {MAX_ATTR_BYTES} (damaged or not an ntdm artifact)")
            value = f.attrs[name]
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{short(path)}: damaged artifact, cannot read attribute '{short(name, 60)}' "
                                f"({exc.__class__.__name__})")
        if _attr_size(value) > MAX_ATTR_BYTES:  # variable-length strings: known only once read
            raise ArtifactError(f"{short(path)}: attribute '{short(name, 60)}' is {_attr_size(value)} bytes, "
                                f"more than {MAX_ATTR_BYTES} (damaged or not an ntdm artifact)")
        attrs[name] = value.decode(errors="replace") if isinstance(value, bytes) else value
    return attrs


def _header(f: h5py.File, path: Path) -> tuple[str, int]:
    kind = f.attrs.get("kind")
    version = f.attrs.get("schema_version")
    if kind is None or version is None:
        raise ArtifactError(f"{short(path)}: HDF5 file without ntdm 'kind'/'schema_version' attributes")
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    return kind, int(version)


def _checked_header(f: h5py.File, path: Path, kinds: tuple[str, ...] | None) -> tuple[str, int]:
    """(kind, version) after checking the kind is one of ``kinds`` and the version is the supported one."""
    found, version = _header(f, path)
    if kinds is not None and found not in kinds:
        raise ArtifactError(f"{short(path)}: expected a {' or '.join(kinds)} artifact, found kind '{short(found, 40)}'")
    expected = SCHEMA_VERSIONS.get(found)
    if expected is None:
        raise ArtifactError(f"{short(path)}: unknown artifact kind '{short(found, 40)}'")
    if version != expected:
        raise ArtifactError(f"{short(path)}: {found} artifact has schema_version {version}, this ntdm reads version {expected}")
    return found, version


def read_artifact(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Read an artifact, checking that it is of ``kind`` (one or several) at a supported version."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    with _open(path) as f:
        found, version = _checked_header(f, path, kinds)
        try:
            attrs = read_attrs(f, path)
            data = _read_group(f)
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{short(path)}: damaged artifact, cannot read its data ({exc.__class__.__name__})")
    return Artifact(path=path, kind=found, schema_version=version, attrs=attrs, data=data)


def describe(path: str | os.PathLike) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """Root attributes and ``(name, shape, dtype)`` of every dataset, for ``ntdm info``."""
    path = Path(path)
    with _open(path) as f:
        _header(f, path)
        attrs = read_attrs(f, path)
        rows: list[tuple[str, str, str]] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                dtype = "str" if h5py.check_string_dtype(obj.dtype) is not None else str(obj.dtype)
                rows.append((name, "×".join(map(str, obj.shape)) or "scalar", dtype))

        try:
            f.visititems(visit)
        except (OSError, KeyError, RuntimeError):
            raise ArtifactError(f"{short(path)}: damaged artifact, cannot list its datasets")
    return attrs, rows



class LazyArtifact:
    """An artifact kept open for reading parts of it on demand (large groups such as the per-image
    masks of ``predictions``): ``attrs``, ``read(key)``, ``has(key)``, ``keys(group)``; a context
    manager. Use :func:`open_artifact`."""

    def __init__(self, path: Path, f: h5py.File, kind: str, schema_version: int):
        self.path = path
        self.kind = kind
        self.schema_version = schema_version
        self._f = f
        self.attrs = read_attrs(f, path)

    def has(self, key: str) -> bool:
        return key in self._f

    def keys(self, group: str = "") -> list[str]:
        node = self._f[group] if group else self._f
        if not isinstance(node, h5py.Group):
            raise ArtifactError(f"{short(self.path)}: '{group}' is a dataset, not a group")
        return list(node.keys())

    def read(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        """One dataset (numpy array / str / list of str) or a whole group (nested dict)."""
        if key not in self._f:
            if required:
                raise ArtifactError(f"{short(self.path)}: {self.kind} artifact has no '{key}'")
            return default
        item = self._f[key]
        try:
            return _read_group(item) if isinstance(item, h5py.Group) else _read_value(item)
        except (OSError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{short(self.path)}: damaged artifact, cannot read '{key}' ({exc.__class__.__name__})")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "LazyArtifact":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_artifact(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> LazyArtifact:
    """Open an artifact for on-demand reading, with the same kind/version checks as ``read_artifact``."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    f = _open(path)
    try:
        found, version = _checked_header(f, path, kinds)
        return LazyArtifact(path, f, found, version)
    except BaseException:
        f.close()
        raise
