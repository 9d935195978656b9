"""Mesh primitives of the procedural CAD models: each returns ``(verts (V,3) float64, faces (F,3) int64)``,
closed and outward oriented, in the category frame of :mod:`ntdm_cli.data.cads` (z up, front -y, units
of about 1 = the object's largest dimension)."""

from __future__ import annotations

import math

import numpy as np


def _orient(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip all faces if the signed volume is negative (parts are built with consistent winding)."""
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    vol = np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6.0
    if vol < 0:
        faces = faces[:, [0, 2, 1]]
    return verts.astype(np.float64), faces.astype(np.int64)


_HEXA_FACES = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5],
                        [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])


def hexa(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convex hexahedron from 8 corners: bottom 4 then top 4, both counter-clockwise seen from +z."""
    return _orient(np.asarray(corners, dtype=np.float64), _HEXA_FACES.copy())


def frustum(z0: float, z1: float, bottom: tuple, top: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Hexahedron between two axis-aligned rectangles ``(xmin, xmax, ymin, ymax)`` at heights z0 < z1."""
    def ring(r, z):
        x0, x1, y0, y1 = r
        return [[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]]

    return hexa(np.array(ring(bottom, z0) + ring(top, z1)))


def box(center, size) -> tuple[np.ndarray, np.ndarray]:
    cx, cy, cz = center
    sx, sy, sz = (s / 2 for s in size)
    r = (cx - sx, cx + sx, cy - sy, cy + sy)
    return frustum(cz - sz, cz + sz, r, r)


def _frame(axis: np.ndarray) -> np.ndarray:
    """3×3 rotation whose third column is the unit ``axis``."""
    a = axis / np.linalg.norm(axis)
    t = np.array([1.0, 0, 0]) if abs(a[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(a, t)
    u /= np.linalg.norm(u)
    v = np.cross(a, u)
    return np.stack([u, v, a], 1)


def lathe(profile, n: int = 20, center=(0.0, 0.0, 0.0), axis=(0.0, 0.0, 1.0),
          scale_xy=(1.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Surface of revolution of ``profile`` [(r, h), ...] (h increasing, r > 0) around ``axis``
    through ``center``; both ends are capped. ``scale_xy`` squashes the cross-section (ellipses)."""
    prof = np.asarray(profile, dtype=np.float64)
    m = len(prof)
    ang = np.arange(n) * 2 * math.pi / n
    ring = np.stack([np.cos(ang) * scale_xy[0], np.sin(ang) * scale_xy[1]], 1)
    verts = [np.concatenate([ring * r, np.full((n, 1), h)], 1) for r, h in prof]
    verts = np.concatenate(verts + [np.array([[0, 0, prof[0, 1]], [0, 0, prof[-1, 1]]])], 0)
    faces = []
    for k in range(m - 1):
        for i in range(n):
            a, b = k * n + i, k * n + (i + 1) % n
            c, d = a + n, b + n
            faces += [[a, b, d], [a, d, c]]
    bot, top = m * n, m * n + 1
    for i in range(n):
        faces.append([bot, (i + 1) % n, i])
        faces.append([top, (m - 1) * n + i, (m - 1) * n + (i + 1) % n])
    R = _frame(np.asarray(axis, dtype=np.float64))
    verts = verts @ R.T + np.asarray(center)
    return _orient(verts, np.array(faces))


def cylinder(p0, p1, radius: float, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    h = float(np.linalg.norm(p1 - p0))
    return lathe([(radius, 0.0), (radius, h)], n=n, center=p0, axis=p1 - p0)


def wing(root_y: tuple, tip_y: tuple, x0: float, x1: float, z0: float, z1: float, thick: float,
         root_thick: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A tapered, swept slab from span position x0 (root chord ``root_y`` = (y_front, y_back), height z0)
    to x1 (tip chord ``tip_y``, height z1), thickness ``thick`` at the tip (``root_thick`` at the root)."""
    rt = thick if root_thick is None else root_thick
    c = np.array([
        [x0, root_y[0], z0 - rt / 2], [x1, tip_y[0], z1 - thick / 2], [x1, tip_y[1], z1 - thick / 2],
        [x0, root_y[1], z0 - rt / 2],
        [x0, root_y[0], z0 + rt / 2], [x1, tip_y[0], z1 + thick / 2], [x1, tip_y[1], z1 + thick / 2],
        [x0, root_y[1], z0 + rt / 2],
    ])
    return hexa(c)


def fin(y_front: float, y_back: float, top_front: float, top_back: float, z0: float, z1: float,
        x: float = 0.0, thick: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """A vertical slab (tail fin, sail): bottom chord [y_front, y_back] at z0, top chord at z1."""
    t = thick / 2
    c = np.array([[x - t, y_front, z0], [x + t, y_front, z0], [x + t, y_back, z0], [x - t, y_back, z0],
                  [x - t, top_front, z1], [x + t, top_front, z1], [x + t, top_back, z1], [x - t, top_back, z1]])
    return hexa(c)


def mirror_x(part: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    v, f = part
    return _orient(v * np.array([-1.0, 1, 1]), f[:, [0, 2, 1]])


def along_y(part: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rotate +90° about x: the local +z axis becomes -y (a lathe's top end becomes the front)."""
    v, f = part
    return _orient(np.stack([v[:, 0], -v[:, 2], v[:, 1]], 1), f)


def ring(center, radius: float, tube: float, n: int = 18, axis: str = "x") -> list:
    """A torus-like ring of ``n`` short cylinders of radius ``tube`` around ``center`` in the plane
    normal to ``axis`` (x: a wheel; z: a horizontal hoop). Returns a list of parts (verts, faces)."""
    c = np.asarray(center, dtype=np.float64)
    pts = []
    for k in range(n + 1):
        a = 2 * math.pi * k / n
        d = (0.0, math.cos(a), math.sin(a)) if axis == "x" else (math.cos(a), math.sin(a), 0.0)
        pts.append(c + radius * np.array(d))
    return [cylinder(pts[k], pts[k + 1], tube, 6) for k in range(n)]
