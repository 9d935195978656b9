"""Datasets: PASCAL3D+ / Occluded-PASCAL3D+ / OOD-CV readers, NeMo-style preprocessing, and the
procedural synthetic benchmark written in PASCAL3D+'s layout (``ntdm synth``).

Imports are lazy so that ``import ntdm_cli.data`` stays cheap (the generator pulls in torch)."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Sample": "ntdm_cli.data.pascal3d",
    "Pascal3DDataset": "ntdm_cli.data.pascal3d",
    "read_record": "ntdm_cli.data.pascal3d",
    "write_record": "ntdm_cli.data.pascal3d",
    "CropTransform": "ntdm_cli.data.preprocess",
    "preprocess": "ntdm_cli.data.preprocess",
    "unpreprocess_points": "ntdm_cli.data.preprocess",
    "unpreprocess_mask": "ntdm_cli.data.preprocess",
    "unpreprocess_viewpoint": "ntdm_cli.data.preprocess",
    "crop_size": "ntdm_cli.data.preprocess",
    "CATEGORIES": "ntdm_cli.data.cads",
    "build_cad": "ntdm_cli.data.cads",
    "write_cads": "ntdm_cli.data.cads",
    "SynthConfig": "ntdm_cli.data.synth",
    "synthesize": "ntdm_cli.data.synth",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ntdm_cli.data' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
