"""The sphere template Υ of the deformable mesh: an icosphere with spherical UVs.

Frame: the category frame of PASCAL3D+ (z up). The icosphere is rotated so that one of its vertices
sits on each pole (+z, -z); the texture coordinates follow the spherical angles:

* ``u`` = azimuthal angle φ = atan2(y, x), mapped linearly from (-π, π] to [0, 1/(1 + m)],
* ``v`` = polar angle ϑ = acos(z), mapped from [0, π] to [0, 1] (v = 0 at the north pole +z).

Faces that straddle the seam (φ = ±π) get per-face texture coordinates: their corners on the φ ≈ -π
side are unwrapped to u + 1 (as in PyTorch3D's ``TexturesUV``, a vertex has one entry in ``verts``
and possibly several in ``verts_uvs``). To keep every coordinate inside [0, 1], u is then divided by
1 + m, where m is the largest unwrap excess of an ordinary face (≈ 0.01 for 4 subdivisions): the
texture's last m/(1+m) columns repeat the azimuths just past the seam, and no face spans the
texture. The icosphere is turned so that the seam runs along mesh edges across the north cap. A
pole vertex has no azimuth; each face around a pole gives its pole corner the mean u of its two
other corners. Near the south pole faces are wide in u (the fan spans 72°); the few of them that
the seam crosses are clamped at the texture edge (slightly squeezed) rather than widening the
whole texture.

Texel layout as ``grid_sample(texture, 2 * uv - 1, align_corners=False)``: (u, v) = (0, 0) is the
top-left corner of the texture image, u grows to the right (columns), v downwards (rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ntdm_cli.errors import NtdmUsageError


@dataclass
class Template:
    """An icosphere template with texture coordinates.

    verts: (V, 3) float32 on the unit sphere, outward-facing counter-clockwise faces.
    faces: (F, 3) int64 indices into ``verts``.
    verts_uvs: (T, 2) float32 texture coordinates (u, v) in [0, 1] (T >= V: seam and pole corners).
    faces_uvs: (F, 3) int64 indices into ``verts_uvs``, corner-aligned with ``faces``.
    subdivisions: the number of icosahedron subdivisions (V = 10·4^s + 2, F = 20·4^s).
    """

    verts: torch.Tensor
    faces: torch.Tensor
    verts_uvs: torch.Tensor
    faces_uvs: torch.Tensor
    subdivisions: int = -1

    @property
    def num_verts(self) -> int:
        return int(self.verts.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def to(self, device) -> "Template":
        return Template(self.verts.to(device), self.faces.to(device), self.verts_uvs.to(device),
                        self.faces_uvs.to(device), self.subdivisions)

    def edges(self) -> torch.Tensor:
        """(E, 2) int64 unique undirected edges (i < j)."""
        return mesh_edges(self.faces)


def mesh_edges(faces: torch.Tensor) -> torch.Tensor:
    """(E, 2) int64 unique undirected edges (i < j) of ``faces`` (F, 3)."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    n = int(faces.max()) + 1 if faces.numel() else 1
    key = torch.unique(e[:, 0] * n + e[:, 1])                  # unique(dim=0) is slow on CPU
    return torch.stack([key // n, key % n], 1)


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    t = (1.0 + 5.0 ** 0.5) / 2.0
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
                  [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], dtype=np.float64)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                  [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                  [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], dtype=np.int64)
    return v / np.linalg.norm(v, axis=1, keepdims=True), f


def _subdivide(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split every triangle into 4 through its edge midpoints (projected onto the sphere)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = np.sort(e, axis=1)
    uniq, inv = np.unique(e, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    mid = verts[uniq[:, 0]] + verts[uniq[:, 1]]
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    F = faces.shape[0]
    m01, m12, m20 = (inv[:F] + len(verts), inv[F:2 * F] + len(verts), inv[2 * F:] + len(verts))
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    new_faces = np.concatenate([np.stack([a, m01, m20], 1), np.stack([b, m12, m01], 1),
                                np.stack([c, m20, m12], 1), np.stack([m01, m12, m20], 1)], 0)
    return np.concatenate([verts, mid], 0), new_faces


def _rotation_to_z(a: np.ndarray) -> np.ndarray:
    """Rotation matrix taking unit vector ``a`` to +z (Rodrigues)."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(a, z)
    s, c = np.linalg.norm(v), float(a @ z)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = v / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - c) * K @ K


def icosphere(subdivisions: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere with a vertex on each pole: verts (V, 3) float64, faces (F, 3) int64 (outward)."""
    v, f = _icosahedron()
    for _ in range(subdivisions):
        v, f = _subdivide(v, f)
    R = _rotation_to_z(v[0])
    # turn about z so that the edge from the north pole to one of its icosahedron neighbours lies on
    # the seam meridian φ = π: the subdivided vertices of that edge stay on the meridian, so the seam
    # follows mesh edges across the whole north cap (no seam face there)
    n = R @ v[5]                       # vertex 5 is adjacent to vertex 0 in _icosahedron()
    g = np.pi - np.arctan2(n[1], n[0])
    Rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    v = v @ (Rz @ R).T
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v[np.abs(v[:, 1]) < 1e-12, 1] = 0.0
    return v, f


def spherical_uvs(verts: np.ndarray, faces: np.ndarray, pole_eps: float = 1e-9
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Seam-split spherical texture coordinates of a unit-sphere mesh.

    verts: (V, 3) on the unit sphere; faces: (F, 3). Returns verts_uvs (T, 2) float64 in [0, 1] and
    faces_uvs (F, 3) int64 (see the module docstring for the mapping)."""
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    u = (np.arctan2(y, x) + np.pi) / (2 * np.pi)            # [0, 1]
    u[(y == 0) & (x < 0)] = 0.0                              # on the seam: u = 0 (faces east of it wrap to 1)
    v = np.arccos(np.clip(z, -1.0, 1.0)) / np.pi            # [0, 1]
    pole = (1.0 - np.abs(z)) < pole_eps
    cu = u[faces].copy()                                     # (F, 3) corner u
    cv = v[faces].copy()
    cpole = pole[faces]
    # unwrap faces crossing the seam: corners on the small-u side get u + 1
    big = np.where(cpole, -np.inf, cu).max(1)
    small = np.where(cpole, np.inf, cu).min(1)
    crossing = (big - small) > 0.5
    wrap = crossing[:, None] & (cu < 0.5) & ~cpole
    cu = np.where(wrap, cu + 1.0, cu)
    # pole corners: mean u of the two other corners of the face
    if cpole.any():
        others = np.where(cpole, 0.0, cu).sum(1) / np.maximum((~cpole).sum(1), 1)
        cu = np.where(cpole, others[:, None], cu)
    # the texture is widened by the excess of ordinary faces (narrower than 0.4 / 2^subdivisions in
    # u, i.e. away from the south cap); the wider south-cap faces that the seam crosses are clamped
    # at the texture edge instead
    span = cu.max(1) - cu.min(1)
    level = max(float(np.sqrt(len(faces) / 20.0)), 1.0)
    ordinary = cu[span < 0.4 / level]
    excess = max(float(ordinary.max()) - 1.0, 0.0) if ordinary.size else 0.0
    cu = np.minimum(cu, 1.0 + excess) / (1.0 + excess)
    # one uv entry per (vertex, corner uv) pair
    key = np.stack([faces.reshape(-1).astype(np.float64), np.round(cu.reshape(-1), 9),
                    np.round(cv.reshape(-1), 9)], 1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    verts_uvs = uniq[:, 1:].copy()
    faces_uvs = inv.reshape(faces.shape).astype(np.int64)
    return np.clip(verts_uvs, 0.0, 1.0), faces_uvs


def make_template(subdivisions: int = 4) -> Template:
    """The icosphere template: ``subdivisions=4`` gives 2562 vertices / 5120 faces (docs/design.md)."""
    if not 0 <= int(subdivisions) <= 7:
        raise NtdmUsageError(f"template subdivisions must be in 0..7, got {subdivisions}")
    v, f = icosphere(int(subdivisions))
    vuv, fuv = spherical_uvs(v, f)
    return Template(
        verts=torch.from_numpy(v.astype(np.float32)),
        faces=torch.from_numpy(f),
        verts_uvs=torch.from_numpy(vuv.astype(np.float32)),
        faces_uvs=torch.from_numpy(fuv),
        subdivisions=int(subdivisions),
    )
