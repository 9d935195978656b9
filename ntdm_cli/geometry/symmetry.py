"""Rotational symmetry of a CAD model about its vertical axis (PASCAL3D+ CAD frame: z up).

A lathe-turned object (most bottles, vases, cans) looks the same from every azimuth, so its azimuth
cannot be recovered from an image; ``ntdm eval`` scores such objects with the symmetry-aware pose
error as well (:func:`ntdm_cli.metrics.symmetric_rotation_error`).
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np
import torch

#: Test angles (degrees): irregular, so that an n-fold prism (n up to ~10) fails at least one of them.
TEST_ANGLES_DEG = (23.0, 61.0, 97.0, 143.0, 180.0, 211.0, 266.0, 317.0)


def is_rotationally_symmetric(verts: np.ndarray, faces: np.ndarray, *, samples: int = 4000,
                              tolerance: float = 0.01) -> bool:
    """Whether the surface is (up to ``tolerance`` × its bounding-box diagonal) unchanged by every
    rotation about the vertical axis through its bounding-box centre.

    verts: (V, 3) float, CAD frame (z up); faces: (F, 3) int. Tested at :data:`TEST_ANGLES_DEG`: the
    99th percentile of the distances from rotated samples to a second, independent set of samples
    must stay within the same percentile for the unrotated surface (sampling noise) plus
    ``tolerance`` × diagonal. A faceted lathe (16-20 sides) passes; a handle, a flattened body or a
    box fails."""
    from scipy.spatial import cKDTree

    from ntdm_cli.geometry.distance import sample_surface

    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if faces.size == 0:
        return False
    v, f = torch.from_numpy(verts), torch.from_numpy(faces)
    a, b = (sample_surface(v, f, samples, torch.Generator().manual_seed(seed)).numpy() for seed in (1, 2))
    diag = float(np.linalg.norm(a.max(0) - a.min(0)))
    if diag <= 0:
        return False
    used = verts[np.unique(faces)]
    centre = (used.max(0) + used.min(0)) / 2  # the axis of a lathe passes through its box centre
    tree = cKDTree(b - centre)
    base = float(np.quantile(tree.query(a - centre)[0], 0.99))
    for deg in TEST_ANGLES_DEG:
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        d = tree.query((a - centre) @ rot.T)[0]
        if float(np.quantile(d, 0.99)) > base + tolerance * diag:
            return False
    return True


@lru_cache(maxsize=256)
def cad_is_rotationally_symmetric(path: str | os.PathLike) -> bool | None:
    """:func:`is_rotationally_symmetric` of a CAD file; None when it cannot be read."""
    from ntdm_cli.errors import NtdmError
    from ntdm_cli.geometry.mesh_io import load_mesh

    try:
        mesh = load_mesh(path, quiet=True)
    except NtdmError:
        return None
    return is_rotationally_symmetric(mesh.verts, mesh.faces)
