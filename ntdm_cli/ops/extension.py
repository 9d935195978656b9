"""Loads the compiled extension ``ntdm_cli._C``; falls back to the pure-torch twins with one warning."""

from __future__ import annotations

import os
import warnings
from types import ModuleType

_EXT: ModuleType | None = None
_TRIED = False
_WARNED = False

BUILD_HINT = "build it with `pip install --no-build-isolation -e .` (or `make install`)"


def load() -> ModuleType | None:
    """The extension module, or None when it is not built (or NTDM_NO_EXT=1)."""
    global _EXT, _TRIED, _WARNED
    if _TRIED:
        return _EXT
    _TRIED = True
    if os.environ.get("NTDM_NO_EXT", "") not in ("", "0"):
        return None
    try:
        import torch  # noqa: F401  (the extension links against torch's libraries)

        from ntdm_cli import _C  # type: ignore[attr-defined]

        _EXT = _C
    except ImportError as exc:
        _EXT = None
        if not _WARNED:
            _WARNED = True
            warnings.warn(
                f"ntdm's compiled ops are not available ({exc}); using the slower pure-torch twins. "
                + BUILD_HINT,
                RuntimeWarning,
                stacklevel=3,
            )
    return _EXT


def has_cuda_kernels() -> bool:
    ext = load()
    return bool(ext is not None and getattr(ext, "with_cuda", False))
