"""Reading ``predictions`` artifacts for ``ntdm eval``: checked kind, consistent lengths, masks on demand."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ntdm_cli.artifacts import LazyArtifact, open_artifact
from ntdm_cli.conventions import ANGLE_KEYS, mask_key
from ntdm_cli.errors import NtdmError


#: Stored rotations that disagree with the stored angles by more than this (radians) are reported.
ROTATION_TOLERANCE = 1e-3




@dataclass
class Predictions:
    """One predictions artifact, masks read on demand (``mask(image_id, which)``)."""

    label: str
    path: Path
    attrs: dict[str, Any]
    image_ids: list[str]
    category: list[str]  # predicted class per image
    angles: np.ndarray  # (N,3) azimuth, elevation, theta, radians
    rotation: np.ndarray | None  # (N,3,3) as stored, or None
    occlusion_level: np.ndarray  # (N,) int
    nuisance: list[str]
    categories: list[str]  # candidate classes of the model ((C,), may be empty)
    category_angles: np.ndarray | None = None  # (N, C, 3) pose solved for each class (NaN: not solved), or None
    loss: np.ndarray | None = None  # (N,) loss of the answer, or None
    annotated_loss: np.ndarray | None = None  # (N,) loss at the annotation (NaN: not computed), or None
    annotated_refined_loss: np.ndarray | None = None  # (N,) the same after optimising from there, or None
    artifact: LazyArtifact | None = None
    index: dict[str, int] = field(default_factory=dict)

    def mask(self, image_id: str, which: str) -> np.ndarray | None:
        if self.artifact is None:
            return None
        value = self.artifact.read(mask_key(image_id, which))
        return None if value is None else np.asarray(value, dtype=bool)

    @property
    def split(self) -> str | None:
        value = self.attrs.get("split")
        return str(value) if value not in (None, "") else None

    def close(self) -> None:
        if self.artifact is not None:
            self.artifact.close()
            self.artifact = None


def load_predictions(path: str | os.PathLike, label: str) -> Predictions:
    """Open a ``predictions`` artifact and read its per-image arrays (not the masks).

    Raises ArtifactError (exit 1) for a missing/other-kind/old file and NtdmError for inconsistent
    lengths, duplicate image ids or missing required datasets."""
    art = open_artifact(path, "predictions")
    try:
        ids = art.read("image_id", required=True)
        ids = [ids] if isinstance(ids, str) else list(ids)
        n = len(ids)

        def arr(key: str, required: bool = True, dtype=np.float64) -> np.ndarray | None:
            value = art.read(key)
            if value is None:
                if required:
                    raise NtdmError(f"{art.path}: predictions artifact has no '{key}'")
                return None
            value = np.asarray(value, dtype=dtype) if dtype is not None else value
            if len(value) != n:
                raise NtdmError(f"{art.path}: '{key}' has {len(value)} entries, 'image_id' has {n}")
            return value

        def strings(key: str, default: str | None) -> list[str]:
            value = art.read(key)
            if value is None:
                if default is None:
                    raise NtdmError(f"{art.path}: predictions artifact has no '{key}'")
                return [default] * n
            value = [value] if isinstance(value, str) else [str(v) for v in value]
            if len(value) != n:
                raise NtdmError(f"{art.path}: '{key}' has {len(value)} entries, 'image_id' has {n}")
            return value

        angles = np.stack([arr(k) for k in ANGLE_KEYS], -1).reshape(n, 3)
        rotation = arr("rotation", required=False)
        if rotation is not None and rotation.shape != (n, 3, 3):
            raise NtdmError(f"{art.path}: 'rotation' has shape {rotation.shape}, expected ({n}, 3, 3)")
        occ = arr("occlusion_level", required=False, dtype=np.int64)
        cats = art.read("categories")
        cats = [] if cats is None else ([cats] if isinstance(cats, str) else [str(c) for c in cats])
        per_class = arr("category_viewpoints", required=False)
        if per_class is not None:
            if per_class.shape != (n, len(cats), 4):
                raise NtdmError(f"{art.path}: 'category_viewpoints' has shape {per_class.shape}, "
                                f"expected ({n}, {len(cats)}, 4) (images, categories, azimuth/elevation/theta/distance)")
            per_class = per_class[..., :3]
        preds = Predictions(
            label=label, path=art.path, attrs=dict(art.attrs), image_ids=[str(i) for i in ids],
            category=strings("category", None), angles=angles, rotation=rotation,
            occlusion_level=np.zeros(n, np.int64) if occ is None else occ,
            nuisance=strings("nuisance", ""), categories=cats, category_angles=per_class,
            loss=arr("loss", required=False), annotated_loss=arr("annotated_loss", required=False),
            annotated_refined_loss=arr("annotated_refined_loss", required=False), artifact=art,
        )
        preds.index = {image_id: i for i, image_id in enumerate(preds.image_ids)}
        if len(preds.index) != n:
            seen: set[str] = set()
            dup = next(i for i in preds.image_ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise NtdmError(f"{art.path}: image_id {dup!r} occurs more than once")
        return preds
    except BaseException:
        art.close()
        raise

