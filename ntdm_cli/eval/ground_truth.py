"""Ground truth for ``ntdm eval``, read through the PASCAL3D+ reader of :mod:`ntdm_cli.data`.

All annotation access of the evaluation goes through :func:`load_ground_truth`, which yields one
:class:`GroundTruth` per annotated image of the selection (split × categories × occlusion levels ×
OOD nuisances). Records are yielded one at a time so that a full validation split never sits in
memory; images and masks are only kept for the ids that were predicted (``image_ids``). Tests and
other data sources can pass any iterable of :class:`GroundTruth` instead (see
:func:`ntdm_cli.eval.report.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Sequence

import numpy as np

from ntdm_cli.errors import NtdmError


@dataclass
class GroundTruth:
    """Annotation of one image.

    image: (H,W,3) uint8 or None (not loaded / unreadable); amodal_mask, visible_mask: (H,W) bool at
    the original image resolution or None (not annotated). Angles in radians (PASCAL3D+ convention).
    cad_index: 0-based CAD model of the object (``CAD/<category>/<cad_index+1:02d>.off``) or None."""

    image_id: str
    category: str
    azimuth: float
    elevation: float
    theta: float
    occlusion_level: int = 0
    nuisance: str = ""
    amodal_mask: np.ndarray | None = None
    visible_mask: np.ndarray | None = None
    image: np.ndarray | None = None
    cad_index: int | None = None  # 0-based index into CAD/<category>/ (None: not annotated)


def ground_truth_from_sample(sample: Any, keep_pixels: bool = True) -> GroundTruth:
    """Convert one ``ntdm_cli.data.Sample`` (duck-typed) into a :class:`GroundTruth`.

    The visible mask is ``amodal & ~occluder`` (just ``amodal`` when there is no occluder mask, i.e.
    an unoccluded image). With ``keep_pixels=False`` image and masks are dropped (annotation only)."""
    vp = sample.viewpoint
    amodal = getattr(sample, "amodal_mask", None)
    occluder = getattr(sample, "occluder_mask", None)
    visible = None
    if keep_pixels and amodal is not None:
        amodal = np.asarray(amodal, dtype=bool)
        visible = amodal if occluder is None else amodal & ~np.asarray(occluder, dtype=bool)
    image = getattr(sample, "image", None) if keep_pixels else None
    return GroundTruth(
        image_id=str(sample.image_id),
        category=str(sample.category),
        azimuth=float(vp["azimuth"]),
        elevation=float(vp["elevation"]),
        theta=float(vp["theta"]),
        occlusion_level=int(getattr(sample, "occlusion_level", 0) or 0),
        nuisance=str(getattr(sample, "nuisance", "") or ""),
        amodal_mask=amodal if keep_pixels else None,
        visible_mask=visible,
        image=None if image is None else np.asarray(image),
        cad_index=_cad_index(getattr(sample, "cad_index", None)),
    )


def load_ground_truth(
    data_root: str | Path,
    split: str,
    image_ids: Collection[str],
    *,
    categories: Sequence[str] | None,
    occlusion_levels: Iterable[int] = (0,),
    nuisances: Iterable[str] = (),
) -> Iterator[GroundTruth]:
    """Yield the annotation of every image of ``split`` under ``data_root`` for the given
    ``categories`` (None: all found), i.i.d. ``occlusion_levels`` (0 = PASCAL3D+, 1-3 =
    Occluded-PASCAL3D+) and OOD-CV ``nuisances``, through :class:`ntdm_cli.data.Pascal3DDataset`.

    Pixels (image, masks) are decoded only for the ids in ``image_ids``; the others come from the
    annotation records alone. An image that cannot be read is yielded without pixels (its pose is
    still scored; IoU and overlay are then unavailable) and counted in one warning line.
    Raises NtdmError when the reader is not available or the data cannot be indexed."""
    try:
        from ntdm_cli.data import Pascal3DDataset  # type: ignore[attr-defined]
    except ImportError as exc:
        raise NtdmError(f"ground truth: the PASCAL3D+ reader ntdm_cli.data is not available ({exc})")
    root = Path(data_root)
    if not root.is_dir():
        raise NtdmError(f"--data {root}: no such folder")
    wanted = set(image_ids)
    selections: list[tuple[int, str | None]] = [(int(lv), None) for lv in sorted(set(occlusion_levels))]
    selections += [(0, str(n)) for n in sorted(set(nuisances)) if n]
    unreadable: list[str] = []
    for level, nuisance in selections:
        dataset = Pascal3DDataset(root, list(categories) if categories else None, split, occlusion=level,
                                  nuisance=nuisance)
        entries = getattr(dataset, "entries", None)
        if entries is None:  # a reader without an index: decode everything
            for sample in dataset:
                yield ground_truth_from_sample(sample, keep_pixels=str(sample.image_id) in wanted)
            continue
        for i, entry in enumerate(entries):
            image_id = str(entry.image_id)
            if image_id in wanted:
                try:
                    yield ground_truth_from_sample(dataset[i])
                    continue
                except NtdmError:
                    unreadable.append(image_id)
            yield _ground_truth_from_entry(entry)
    if unreadable:
        from ntdm_cli.console import warn

        warn(f"{len(unreadable)} annotated images could not be read (first: {', '.join(unreadable[:3])}); "
             "their poses are scored, their masks and overlays are not")


def _ground_truth_from_entry(entry: Any) -> GroundTruth:
    """Annotation only (no pixels) from an index entry of ``Pascal3DDataset`` (``category``,
    ``image_id``, ``record_object.viewpoint``, ``occlusion_level``, ``nuisance``)."""
    vp = entry.record_object.viewpoint
    return GroundTruth(
        image_id=str(entry.image_id), category=str(entry.category), azimuth=float(vp["azimuth"]),
        elevation=float(vp["elevation"]), theta=float(vp["theta"]),
        occlusion_level=int(entry.occlusion_level), nuisance=str(entry.nuisance or ""),
        cad_index=_cad_index(getattr(entry.record_object, "cad_index", None)),
    )


def _cad_index(value: Any) -> int | None:
    return None if value is None or int(value) < 0 else int(value)
