"""Procedural CAD models of the synthetic benchmark, in PASCAL3D+'s category frame: the category
registry, subtype splits, and the OFF writer.

Frame (as the PASCAL3D+ CAD models): z up, the object's front faces -y (azimuth 0 under docs/design.md's
camera looks at the front, azimuth 90° at the object's side on +x), length along y for vehicles,
width along x; every model is centred on its bounding-box centre and sized like PASCAL3D+'s models
(largest dimension about 1 unit).

A model is a list of closed, outward-oriented triangle parts (boxes, frusta, cylinders, lathe
profiles, wings); the union is "watertight-ish" (parts may interpenetrate). Parts carry a material
role (body, glass, tire, ...) that the renderer textures independently.

Each category has several subtypes; the last ``HELD_OUT[category]`` subtypes are *held out*: they are
never used by the i.i.d. splits and are written apart (``OOD_CV/CAD_heldout``) for the OOD shape split.
CAD files are ``CAD/<category>/NN.off`` with 1-based NN, as in PASCAL3D+.

The mesh primitives live in :mod:`ntdm_cli.data.primitives`, each category's builder and subtype table
in :mod:`ntdm_cli.data.categories`; both are re-exported here under their former names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ntdm_cli.data.categories import MODULES
from ntdm_cli.data.primitives import along_y, box, cylinder, fin, frustum, hexa, lathe, mirror_x, wing  # noqa: F401
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.geometry import mesh_io


# ----------------------------------------------------------------------------------------------------


@dataclass
class CadModel:
    """One subtype: closed parts with material roles, centred on the bounding-box centre."""

    category: str
    index: int  # 0-based subtype index; CAD file NN = index + 1
    name: str
    held_out: bool
    parts: list[tuple[np.ndarray, np.ndarray, str]] = field(default_factory=list)

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``verts (V,3) float64, faces (F,3) int64, part_ids (F,) int64`` (index into ``roles``)."""
        vs, fs, ids, off = [], [], [], 0
        for k, (v, f, _) in enumerate(self.parts):
            vs.append(v)
            fs.append(f + off)
            ids.append(np.full(len(f), k, dtype=np.int64))
            off += len(v)
        return np.concatenate(vs), np.concatenate(fs), np.concatenate(ids)

    @property
    def roles(self) -> list[str]:
        return [r for _, _, r in self.parts]

    @property
    def extent(self) -> np.ndarray:
        v = np.concatenate([p[0] for p in self.parts])
        return v.max(0) - v.min(0)


def _finish(category: str, index: int, name: str, parts: list, held_out: bool) -> CadModel:
    allv = np.concatenate([p[0] for p in parts])
    c = (allv.max(0) + allv.min(0)) / 2
    parts = [(v - c, f, r) for v, f, r in parts]
    return CadModel(category, index, name, held_out, parts)



# ----------------------------------------------------------------------------------------------------

_BUILDERS: dict[str, tuple[Callable[[dict], list], list]] = {c: (m.build, m.SUBTYPES) for c, m in MODULES.items()}
# each category's subtype table [(name, params), ...] under its former name
(CAR, BUS, AEROPLANE, SOFA, CHAIR, BOTTLE, TVMONITOR, BOAT, BICYCLE, DININGTABLE, MOTORBIKE, TRAIN) = (
    MODULES[c].SUBTYPES for c in ("car", "bus", "aeroplane", "sofa", "chair", "bottle", "tvmonitor", "boat",
                                  "bicycle", "diningtable", "motorbike", "train"))

#: categories of the synthetic benchmark (PASCAL3D+ names)
CATEGORIES: tuple[str, ...] = tuple(_BUILDERS)
#: number of held-out subtypes (the last ones of each list) used only by the OOD shape split
HELD_OUT: dict[str, int] = {c: 1 for c in CATEGORIES}


def check_categories(categories) -> list[str]:
    cats = [c.strip() for c in (categories.split(",") if isinstance(categories, str) else categories) if c.strip()]
    if not cats:
        raise NtdmUsageError("--categories: no category given")
    for c in cats:
        if c not in _BUILDERS:
            raise NtdmUsageError(f"--categories: unknown category {c!r} (known: {', '.join(CATEGORIES)})")
    if len(set(cats)) != len(cats):
        raise NtdmUsageError("--categories: a category is listed twice")
    return cats


def num_subtypes(category: str) -> int:
    return len(_BUILDERS[category][1])


def train_subtypes(category: str) -> list[int]:
    """0-based subtype indices used by the i.i.d. splits (written to ``CAD/<category>``)."""
    return list(range(num_subtypes(category) - HELD_OUT[category]))


def heldout_subtypes(category: str) -> list[int]:
    n = num_subtypes(category)
    return list(range(n - HELD_OUT[category], n))


_CACHE: dict[tuple[str, int], CadModel] = {}


def build_cad(category: str, index: int) -> CadModel:
    """Subtype ``index`` (0-based) of ``category``, deterministic (cached)."""
    key = (category, index)
    if key not in _CACHE:
        if category not in _BUILDERS:
            raise NtdmUsageError(f"unknown category {category!r} (known: {', '.join(CATEGORIES)})")
        fn, table = _BUILDERS[category]
        if not 0 <= index < len(table):
            raise NtdmUsageError(f"{category}: subtype {index} out of range 0..{len(table) - 1}")
        name, params = table[index]
        held = index in heldout_subtypes(category)
        _CACHE[key] = _finish(category, index, name, fn(params), held)
    return _CACHE[key]


def nearest_train_subtype(category: str, index: int) -> int:
    """For a held-out subtype: the training subtype with the closest bounding box (log-extent),
    used as its annotated ``cad_index`` (like an annotator picking the closest PASCAL3D+ CAD)."""
    e = np.log(build_cad(category, index).extent)
    cands = train_subtypes(category)
    d = [float(np.abs(np.log(build_cad(category, j).extent) - e).sum()) for j in cands]
    return cands[int(np.argmin(d))]


def write_off(path: str | os.PathLike, verts: np.ndarray, faces: np.ndarray) -> Path:
    """A catalogue mesh as an OFF file: geometry.write_off with six decimals per coordinate."""
    return mesh_io.write_off(path, verts, faces, number_format="%.6f")


def write_cads(root: str | os.PathLike, categories, heldout_root: str | os.PathLike | None = None) -> dict[str, int]:
    """Write ``root/CAD/<category>/NN.off`` (training subtypes, NN 1-based) and, when ``heldout_root`` is
    given, the held-out subtypes as ``heldout_root/<category>/NN.off`` (NN continuing the numbering).
    Returns the number of training CADs per category."""
    counts = {}
    for cat in check_categories(categories):
        folder = Path(root) / "CAD" / cat
        folder.mkdir(parents=True, exist_ok=True)
        for i in train_subtypes(cat):
            v, f, _ = build_cad(cat, i).mesh()
            write_off(folder / f"{i + 1:02d}.off", v, f)
        counts[cat] = len(train_subtypes(cat))
        if heldout_root is not None:
            hf = Path(heldout_root) / cat
            hf.mkdir(parents=True, exist_ok=True)
            for i in heldout_subtypes(cat):
                v, f, _ = build_cad(cat, i).mesh()
                write_off(hf / f"{i + 1:02d}.off", v, f)
    return counts
