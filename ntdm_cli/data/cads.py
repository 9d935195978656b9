"""Procedural CAD models of the synthetic benchmark, in PASCAL3D+'s category frame.

Frame (as the PASCAL3D+ CAD models): z up, the object's front faces -y (azimuth 0 under DESIGN.md's
camera looks at the front, azimuth 90° at the object's side on +x), length along y for vehicles,
width along x; every model is centred on its bounding-box centre and sized like PASCAL3D+'s models
(largest dimension about 1 unit).

A model is a list of closed, outward-oriented triangle parts (boxes, frusta, cylinders, lathe
profiles, wings); the union is "watertight-ish" (parts may interpenetrate). Parts carry a material
role (body, glass, tire, ...) that the renderer textures independently.

Each category has several subtypes; the last ``HELD_OUT[category]`` subtypes are *held out*: they are
never used by the i.i.d. splits and are written apart (``OOD_CV/CAD_heldout``) for the OOD shape split.
CAD files are ``CAD/<category>/NN.off`` with 1-based NN, as in PASCAL3D+.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ntdm_cli.errors import NtdmUsageError

# ----------------------------------------------------------------------------------------------------
# primitives: each returns (verts (V,3) float64, faces (F,3) int64), closed and outward oriented


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


# ------------------------------------------------------------------------------------------ car


def _car(p: dict) -> list:
    L, W, clear, bh = p["L"], p["W"], p["clear"], p["body_h"]
    wr = p["wheel_r"]
    z0, z1 = clear, clear + bh
    taper = p.get("nose", 0.05) * L
    parts = [(*frustum(z0, z1, (-W / 2, W / 2, -L / 2, L / 2),
                       (-W * 0.47, W * 0.47, -L / 2 + taper, L / 2 - 0.02 * L)), "body")]
    cf, cb = -L / 2 + p["cab"][0] * L, -L / 2 + p["cab"][1] * L
    sf, sb = p["slope"][0] * L, p["slope"][1] * L
    parts.append((*frustum(z1, z1 + p["cab_h"], (-W * 0.45, W * 0.45, cf, cb),
                           (-W * 0.40, W * 0.40, cf + sf, cb - sb)), "glass"))
    if p.get("roof_box"):
        parts.append((*box((0, (cf + cb) / 2 + (sf - sb) / 2, z1 + p["cab_h"] + 0.02),
                           (W * 0.6, (cb - cf - sf - sb) * 0.7, 0.04)), "metal"))
    if p.get("bed"):  # pickup: side walls of the load bed behind the cab
        yb0, yb1 = cb + 0.01, L / 2 - 0.02 * L
        for sx in (-1, 1):
            parts.append((*box((sx * W * 0.44, (yb0 + yb1) / 2, z1 + 0.04), (W * 0.08, yb1 - yb0, 0.08)), "body"))
    if p.get("spoiler"):
        parts.append((*box((0, L / 2 - 0.05 * L, z1 + 0.05), (W * 0.9, 0.05 * L, 0.02)), "metal"))
        for sx in (-1, 1):
            parts.append((*box((sx * W * 0.3, L / 2 - 0.05 * L, z1 + 0.02), (0.02, 0.03, 0.05)), "metal"))
    wy = L / 2 - p.get("wheel_inset", 0.17) * L
    axles = [-wy, wy] if not p.get("three_axles") else [-wy, wy - 2.3 * wr, wy]
    for y in axles:
        for sx in (-1, 1):
            parts.append((*cylinder((sx * (W / 2 - 0.1 * W), y, wr), (sx * (W / 2 + 0.012), y, wr), wr, 14), "tire"))
    for sx in (-1, 1):
        parts.append((*box((sx * W * 0.32, -L / 2 + taper / 2, z1 - 0.03), (W * 0.18, 0.02 + taper, 0.03)), "light"))
    return parts


CAR = [
    ("sedan", dict(L=1.0, W=0.40, clear=0.05, body_h=0.16, cab=(0.30, 0.80), slope=(0.12, 0.12), cab_h=0.12, wheel_r=0.075)),
    ("hatchback", dict(L=0.86, W=0.40, clear=0.05, body_h=0.17, cab=(0.30, 0.98), slope=(0.13, 0.05), cab_h=0.14, wheel_r=0.075)),
    ("suv", dict(L=1.0, W=0.43, clear=0.09, body_h=0.21, cab=(0.28, 0.98), slope=(0.10, 0.02), cab_h=0.17, wheel_r=0.095, roof_box=True)),
    ("pickup", dict(L=1.05, W=0.43, clear=0.09, body_h=0.19, cab=(0.30, 0.58), slope=(0.08, 0.02), cab_h=0.16, wheel_r=0.095, bed=True)),
    ("sports", dict(L=0.98, W=0.44, clear=0.035, body_h=0.12, cab=(0.38, 0.78), slope=(0.17, 0.14), cab_h=0.09, wheel_r=0.07, nose=0.12, spoiler=True)),
    ("van", dict(L=1.0, W=0.42, clear=0.07, body_h=0.22, cab=(0.12, 0.99), slope=(0.10, 0.01), cab_h=0.22, wheel_r=0.08, nose=0.08)),
    ("wagon", dict(L=1.04, W=0.41, clear=0.05, body_h=0.16, cab=(0.30, 0.97), slope=(0.12, 0.03), cab_h=0.13, wheel_r=0.075)),
]

# ------------------------------------------------------------------------------------------ bus


def _bus(p: dict) -> list:
    L, W, H, clear, wr = p["L"], p["W"], p["H"], p["clear"], p["wheel_r"]
    parts = []
    nose = p.get("nose", 0.0)
    if p.get("hood"):  # school bus: engine hood in front of the box body
        hl = 0.14 * L
        parts.append((*frustum(clear, clear + 0.45 * H, (-W * 0.45, W * 0.45, -L / 2, -L / 2 + hl),
                               (-W * 0.42, W * 0.42, -L / 2 + 0.03, -L / 2 + hl)), "body"))
        y0 = -L / 2 + hl
    else:
        y0 = -L / 2
    segments = [(y0, L / 2)] if not p.get("articulated") else [(y0, -0.02), (0.02, L / 2)]
    for a, b in segments:
        parts.append((*frustum(clear, clear + H, (-W / 2, W / 2, a, b), (-W / 2, W / 2, a + nose, b)), "body"))
        decks = [0.55] if not p.get("double") else [0.33, 0.78]
        for d in decks:  # window bands, slightly proud of the body
            zc = clear + d * H
            parts.append((*box((0, (a + b) / 2 + nose * d / 2, zc), (W + 0.01, (b - a) * 0.94 - nose, 0.2 * H)), "glass"))
        if p.get("articulated"):
            parts.append((*box((0, 0, clear + H * 0.45), (W * 0.9, 0.05, H * 0.85)), "metal"))
    ys = [-L / 2 + 0.16 * L, L / 2 - 0.2 * L] if not p.get("articulated") else [-L / 2 + 0.12 * L, -0.12 * L, L / 2 - 0.12 * L]
    for y in ys:
        for sx in (-1, 1):
            parts.append((*cylinder((sx * (W / 2 - 0.08 * W), y, wr), (sx * (W / 2 + 0.01), y, wr), wr, 14), "tire"))
    if p.get("roof_unit"):
        parts.append((*box((0, 0.1 * L, clear + H + 0.025), (W * 0.7, 0.25 * L, 0.05)), "metal"))
    return parts


BUS = [
    ("city", dict(L=1.0, W=0.21, H=0.26, clear=0.035, wheel_r=0.045, roof_unit=True)),
    ("coach", dict(L=1.0, W=0.21, H=0.29, clear=0.04, wheel_r=0.045, nose=0.05)),
    ("double_decker", dict(L=0.9, W=0.21, H=0.38, clear=0.035, wheel_r=0.045, double=True)),
    ("minibus", dict(L=0.62, W=0.2, H=0.24, clear=0.04, wheel_r=0.045, nose=0.08)),
    ("school", dict(L=0.95, W=0.21, H=0.26, clear=0.045, wheel_r=0.048, hood=True)),
    ("articulated", dict(L=1.0, W=0.17, H=0.21, clear=0.03, wheel_r=0.036, articulated=True)),
]

# ------------------------------------------------------------------------------------------ aeroplane


def _aeroplane(p: dict) -> list:
    fl, fr = p["fuse_len"], p["fuse_r"]
    prof = [(fr * 0.35, 0.0), (fr * 0.8, 0.12 * fl), (fr, 0.3 * fl), (fr, 0.8 * fl), (fr * 0.7, 0.92 * fl),
            (fr * 0.15, fl)]
    parts = [(*along_y(lathe(prof, 16, center=(0, 0, -fl / 2))), "body")]
    span, sweep, chord = p["span"], p["sweep"], p["chord"]
    wz = p.get("wing_z", -0.3) * fr
    wy = p.get("wing_y", -0.05)
    for sx in (1, -1):
        w = wing((wy - chord / 2, wy + chord / 2), (wy - chord / 2 + sweep, wy - chord / 2 + sweep + chord * p["taper"]),
                 0.0, span / 2, wz, wz + p.get("dihedral", 0.02), 0.01, 0.03)
        parts.append((*(w if sx > 0 else mirror_x(w)), "wing"))
        for e in range(p.get("engines", 0) // 2):
            ex = sx * span / 2 * (0.35 + 0.3 * e)
            ey = wy - chord / 2 + sweep * (0.35 + 0.3 * e) - 0.03
            parts.append((*along_y(lathe([(0.035, 0), (0.04, 0.05), (0.035, 0.14)], 12, center=(ex, ey + 0.07, -(wz - 0.04)))), "metal"))
    if p.get("biplane"):
        for sx in (1, -1):
            w = wing((wy - chord / 2, wy + chord / 2), (wy - chord / 2, wy + chord / 2), 0.0, span / 2,
                     wz + 0.18, wz + 0.18, 0.012)
            parts.append((*(w if sx > 0 else mirror_x(w)), "wing"))
            parts.append((*cylinder((sx * span * 0.35, wy, wz), (sx * span * 0.35, wy, wz + 0.18), 0.006, 6), "metal"))
    ty = fl / 2 - 0.12 * fl
    parts.append((*fin(ty - 0.05, ty + 0.1, ty + 0.05, ty + 0.12, fr * 0.5, fr * 0.5 + p["fin_h"], thick=0.015), "wing"))
    hs = p.get("hstab", 0.35) * span / 2
    for sx in (1, -1):
        w = wing((ty - 0.02, ty + 0.09), (ty + 0.05, ty + 0.11), 0.0, hs, fr * 0.3, fr * 0.35, 0.008, 0.015)
        parts.append((*(w if sx > 0 else mirror_x(w)), "wing"))
    if p.get("propeller"):
        parts.append((*box((0, -fl / 2 - 0.01, 0), (0.22, 0.01, 0.025)), "metal"))
    return parts


AEROPLANE = [
    ("airliner", dict(fuse_len=1.0, fuse_r=0.055, span=0.95, sweep=0.18, chord=0.2, taper=0.35, engines=2, fin_h=0.16)),
    ("jumbo", dict(fuse_len=1.05, fuse_r=0.07, span=1.05, sweep=0.22, chord=0.24, taper=0.3, engines=4, fin_h=0.18)),
    ("fighter", dict(fuse_len=0.9, fuse_r=0.05, span=0.5, sweep=0.3, chord=0.42, taper=0.15, fin_h=0.13, wing_y=0.1, wing_z=0.0, hstab=0.6)),
    ("propeller", dict(fuse_len=0.75, fuse_r=0.05, span=1.0, sweep=0.0, chord=0.14, taper=0.7, fin_h=0.12, wing_z=0.8, wing_y=-0.1, propeller=True)),
    ("glider", dict(fuse_len=0.7, fuse_r=0.035, span=1.3, sweep=0.02, chord=0.09, taper=0.5, fin_h=0.12, wing_z=0.6, wing_y=-0.07)),
    ("jet", dict(fuse_len=0.85, fuse_r=0.045, span=0.72, sweep=0.14, chord=0.16, taper=0.45, engines=2, fin_h=0.15, wing_y=0.02)),
    ("biplane", dict(fuse_len=0.7, fuse_r=0.05, span=0.8, sweep=0.0, chord=0.13, taper=1.0, fin_h=0.11, wing_z=-0.6, wing_y=-0.12, biplane=True, propeller=True)),
]

# ------------------------------------------------------------------------------------------ sofa


def _sofa(p: dict) -> list:
    W, D, seat_z, back_h, arm = p["W"], p["D"], p["seat_z"], p["back_h"], p["arm"]
    leg = p.get("leg", 0.05)
    parts = [(*box((0, 0, leg + (seat_z - leg) / 2), (W, D, seat_z - leg)), "fabric")]
    bt = 0.18 * D
    parts.append((*frustum(seat_z, seat_z + back_h, (-W / 2, W / 2, D / 2 - bt, D / 2),
                           (-W / 2, W / 2, D / 2 - bt * (1 - p.get("recline", 0.0)), D / 2 + p.get("recline", 0) * bt)), "fabric"))
    ns = p.get("cushions", 2)
    cw = (W - 2 * arm) / ns
    for k in range(ns):
        cx = -W / 2 + arm + cw * (k + 0.5)
        parts.append((*box((cx, -bt / 2, seat_z + 0.035), (cw * 0.96, D - bt - 0.02, 0.07)), "cushion"))
    if arm > 0:
        for sx in (-1, 1):
            if p.get("round_arms"):
                parts.append((*cylinder((sx * (W / 2 - arm / 2), -D / 2, seat_z + 0.05), (sx * (W / 2 - arm / 2), D / 2, seat_z + 0.05), arm * 0.8, 14), "fabric"))
            else:
                parts.append((*box((sx * (W / 2 - arm / 2), 0, (leg + seat_z + p.get("arm_h", 0.12)) / 2 + leg / 2),
                                   (arm, D, seat_z + p.get("arm_h", 0.12) - leg)), "fabric"))
    if p.get("chaise"):
        parts.append((*box((W / 2 - 0.2, -D / 2 - 0.2, leg + (seat_z - leg) / 2), (0.4, 0.4, seat_z - leg)), "fabric"))
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append((*box((sx * (W / 2 - 0.04), sy * (D / 2 - 0.04), leg / 2), (0.035, 0.035, leg)), "wood"))
    return parts


SOFA = [
    ("three_seater", dict(W=1.0, D=0.42, seat_z=0.2, back_h=0.2, arm=0.09, cushions=3)),
    ("two_seater", dict(W=0.75, D=0.42, seat_z=0.2, back_h=0.22, arm=0.1, cushions=2)),
    ("armless", dict(W=0.85, D=0.38, seat_z=0.19, back_h=0.18, arm=0.0, cushions=3, leg=0.07)),
    ("lounge", dict(W=1.0, D=0.5, seat_z=0.16, back_h=0.16, arm=0.14, cushions=2, arm_h=0.06, recline=0.8)),
    ("chaise", dict(W=0.95, D=0.42, seat_z=0.2, back_h=0.2, arm=0.08, cushions=3, chaise=True)),
    ("roundarm", dict(W=0.9, D=0.44, seat_z=0.2, back_h=0.22, arm=0.09, cushions=2, round_arms=True)),
]

# ------------------------------------------------------------------------------------------ chair


def _chair(p: dict) -> list:
    W, D, sz, bh = p["W"], p["D"], p["seat_z"], p["back_h"]
    t = 0.035
    parts = [(*box((0, 0, sz - t / 2), (W, D, t)), "seat")]
    lean = p.get("lean", 0.04)
    if p.get("slats"):
        n = p["slats"]
        for k in range(n):
            x = -W / 2 + 0.03 + (W - 0.06) * k / (n - 1)
            parts.append((*frustum(sz, sz + bh, (x - 0.012, x + 0.012, D / 2 - 0.03, D / 2),
                                   (x - 0.012, x + 0.012, D / 2 - 0.03 + lean, D / 2 + lean)), "wood"))
        parts.append((*box((0, D / 2 - 0.015 + lean, sz + bh - 0.03), (W, 0.035, 0.06)), "wood"))
    elif bh > 0:
        parts.append((*frustum(sz, sz + bh, (-W / 2, W / 2, D / 2 - 0.03, D / 2),
                               (-W / 2 * p.get("back_taper", 1.0), W / 2 * p.get("back_taper", 1.0), D / 2 - 0.03 + lean, D / 2 + lean)), "seat"))
    if p.get("arms"):
        for sx in (-1, 1):
            parts.append((*box((sx * (W / 2 + 0.02), 0, sz + 0.12), (0.04, D, 0.03)), "wood"))
            parts.append((*box((sx * (W / 2 + 0.02), -D / 2 + 0.03, sz + 0.06), (0.03, 0.03, 0.12)), "wood"))
    if p.get("office"):
        parts.append((*cylinder((0, 0, 0.06), (0, 0, sz - t), 0.025, 10), "metal"))
        for k in range(5):
            a = 2 * math.pi * k / 5
            parts.append((*cylinder((0, 0, 0.04), (0.22 * math.sin(a), -0.22 * math.cos(a), 0.03), 0.015, 6), "metal"))
            parts.append((*cylinder((0.22 * math.sin(a), -0.22 * math.cos(a), 0.0), (0.22 * math.sin(a), -0.22 * math.cos(a), 0.035), 0.02, 8), "tire"))
    else:
        splay = p.get("splay", 0.0)
        for sx in (-1, 1):
            for sy in (-1, 1):
                top = (sx * (W / 2 - 0.03), sy * (D / 2 - 0.03), sz - t)
                bot = (sx * (W / 2 - 0.03 + splay), sy * (D / 2 - 0.03 + splay), 0.0)
                if p.get("round_legs"):
                    parts.append((*cylinder(bot, top, 0.016, 8), "wood"))
                else:
                    parts.append((*frustum(0, sz - t, (bot[0] - 0.015, bot[0] + 0.015, bot[1] - 0.015, bot[1] + 0.015),
                                           (top[0] - 0.015, top[0] + 0.015, top[1] - 0.015, top[1] + 0.015)), "wood"))
        if p.get("rockers"):
            for sx in (-1, 1):
                parts.append((*box((sx * (W / 2 - 0.03), 0, 0.0), (0.03, D * 1.5, 0.03)), "wood"))
    return parts


CHAIR = [
    ("dining", dict(W=0.42, D=0.42, seat_z=0.45, back_h=0.42, round_legs=True)),
    ("armchair", dict(W=0.5, D=0.5, seat_z=0.42, back_h=0.4, arms=True)),
    ("slatback", dict(W=0.42, D=0.4, seat_z=0.45, back_h=0.45, slats=5, round_legs=True)),
    ("office", dict(W=0.46, D=0.44, seat_z=0.48, back_h=0.4, office=True, back_taper=0.8)),
    ("stool_back", dict(W=0.36, D=0.36, seat_z=0.62, back_h=0.22, splay=0.05, round_legs=True)),
    ("highback", dict(W=0.44, D=0.42, seat_z=0.43, back_h=0.62, lean=0.08)),
    ("rocking", dict(W=0.46, D=0.46, seat_z=0.42, back_h=0.5, arms=True, rockers=True, round_legs=True)),
]

# ------------------------------------------------------------------------------------------ bottle


def _bottle(p: dict) -> list:
    prof = p["profile"]
    H = prof[-1][1]
    parts = [(*lathe([(r, h) for r, h in prof], p.get("n", 20), center=(0, 0, 0), scale_xy=p.get("xy", (1, 1))), "glass")]
    if p.get("label"):
        a, b, r = p["label"]
        parts.append((*lathe([(r, a * H), (r, b * H)], p.get("n", 20), scale_xy=p.get("xy", (1, 1))), "label"))
    cap_r = prof[-1][0] * 1.08
    parts.append((*cylinder((0, 0, H), (0, 0, H + 0.05), cap_r, 14), "metal"))
    if p.get("handle"):
        parts.append((*box((prof[2][0] + 0.05, 0, 0.62 * H), (0.04, 0.03, 0.3 * H)), "glass"))
    return parts


BOTTLE = [
    ("wine", dict(profile=[(0.14, 0), (0.15, 0.02), (0.15, 0.55), (0.12, 0.66), (0.05, 0.76), (0.045, 0.95)], label=(0.2, 0.45, 0.153))),
    ("water", dict(profile=[(0.16, 0), (0.17, 0.03), (0.16, 0.3), (0.17, 0.55), (0.15, 0.68), (0.06, 0.8), (0.055, 0.88)], label=(0.35, 0.5, 0.172))),
    ("beer", dict(profile=[(0.12, 0), (0.13, 0.02), (0.13, 0.45), (0.1, 0.58), (0.045, 0.72), (0.045, 0.8)], label=(0.15, 0.38, 0.133))),
    ("jug", dict(profile=[(0.2, 0), (0.23, 0.05), (0.23, 0.45), (0.18, 0.58), (0.08, 0.7), (0.07, 0.76)], handle=True)),
    ("flask", dict(profile=[(0.2, 0), (0.22, 0.03), (0.22, 0.5), (0.12, 0.62), (0.06, 0.7), (0.06, 0.78)], n=4, xy=(1.0, 0.55), label=(0.15, 0.4, 0.224))),
    ("soda", dict(profile=[(0.15, 0), (0.13, 0.05), (0.16, 0.2), (0.13, 0.35), (0.16, 0.55), (0.1, 0.75), (0.055, 0.85), (0.05, 0.9)])),
    ("vase", dict(profile=[(0.1, 0), (0.2, 0.2), (0.23, 0.38), (0.16, 0.6), (0.08, 0.72), (0.12, 0.85)])),
]

# ------------------------------------------------------------------------------------------ tvmonitor


def _tv(p: dict) -> list:
    W, H, D, base_z = p["W"], p["H"], p["D"], p["base_z"]
    zc = base_z + H / 2
    parts = []
    if p.get("crt"):
        parts.append((*frustum(zc - H / 2, zc + H / 2, (-W / 2, W / 2, -D / 2, -D / 2 + 0.05), (-W / 2, W / 2, -D / 2, -D / 2 + 0.05)), "body"))
        parts.append((*hexa(np.array([[-W / 2, -D / 2 + 0.05, zc - H / 2], [W / 2, -D / 2 + 0.05, zc - H / 2],
                                      [W * 0.3, D / 2, zc - H * 0.3], [-W * 0.3, D / 2, zc - H * 0.3],
                                      [-W / 2, -D / 2 + 0.05, zc + H / 2], [W / 2, -D / 2 + 0.05, zc + H / 2],
                                      [W * 0.3, D / 2, zc + H * 0.3], [-W * 0.3, D / 2, zc + H * 0.3]])), "body"))
        y_front = -D / 2
    elif p.get("curved"):
        n = 7
        for k in range(n):
            a0, a1 = (k / n - 0.5) * p["curved"], ((k + 1) / n - 0.5) * p["curved"]
            R = W / p["curved"]
            xs = [R * math.sin(a0), R * math.sin(a1)]
            ys = [R * (1 - math.cos(a0)), R * (1 - math.cos(a1))]
            parts.append((*hexa(np.array([[xs[0], ys[0] - D / 2, zc - H / 2], [xs[1], ys[1] - D / 2, zc - H / 2],
                                          [xs[1], ys[1] + D / 2, zc - H / 2], [xs[0], ys[0] + D / 2, zc - H / 2],
                                          [xs[0], ys[0] - D / 2, zc + H / 2], [xs[1], ys[1] - D / 2, zc + H / 2],
                                          [xs[1], ys[1] + D / 2, zc + H / 2], [xs[0], ys[0] + D / 2, zc + H / 2]])), "body"))
        y_front = None
    else:
        parts.append((*box((0, 0, zc), (W, D, H)), "body"))
        y_front = -D / 2
    if y_front is not None:
        parts.append((*box((0, y_front - 0.004, zc), (W * 0.9, 0.01, H * 0.86)), "screen"))
    if p.get("legs"):
        for sx in (-1, 1):
            parts.append((*frustum(0, base_z + 0.05, (sx * W * 0.4 - 0.02, sx * W * 0.4 + 0.02, -0.08, 0.08),
                                   (sx * W * 0.4 - 0.01, sx * W * 0.4 + 0.01, -0.01, 0.01)), "metal"))
    elif base_z > 0:
        parts.append((*box((0, 0.02, base_z / 2 + 0.01), (0.06, 0.03, base_z)), "metal"))
        parts.append((*box((0, 0.02, 0.01), (p.get("base_w", 0.3), 0.18, 0.02)), "metal"))
    return parts


TVMONITOR = [
    ("flat", dict(W=0.75, H=0.45, D=0.05, base_z=0.12)),
    ("crt", dict(W=0.55, H=0.45, D=0.5, base_z=0.0, crt=True)),
    ("wide", dict(W=0.9, H=0.4, D=0.04, base_z=0.1, legs=True)),
    ("monitor", dict(W=0.55, H=0.36, D=0.06, base_z=0.2, base_w=0.25)),
    ("wall", dict(W=0.8, H=0.47, D=0.04, base_z=0.0)),
    ("curved", dict(W=0.85, H=0.38, D=0.05, base_z=0.14, curved=0.8)),
]

# ------------------------------------------------------------------------------------------ boat


def _boat(p: dict) -> list:
    L, W, H = p["L"], p["W"], p["H"]
    parts = []
    hulls = [0.0] if not p.get("catamaran") else [-W * 0.38, W * 0.38]
    hw = W / 2 if not p.get("catamaran") else W * 0.12
    for cx in hulls:
        # bow (front, -y) comes to a point, stern is square; bottom narrower than deck
        parts.append((*hexa(np.array([[cx - 0.02, -L / 2 + 0.1 * L, 0], [cx + 0.02, -L / 2 + 0.1 * L, 0],
                                      [cx + hw * p.get("keel", 0.5), L / 2 - 0.03, 0], [cx - hw * p.get("keel", 0.5), L / 2 - 0.03, 0],
                                      [cx - 0.005, -L / 2, H], [cx + 0.005, -L / 2, H], [cx + hw, L / 2, H], [cx - hw, L / 2, H]])), "body"))
        parts.append((*frustum(H * 0.4, H * 1.02, (cx - hw * 0.9, cx + hw * 0.9, -L * 0.2, L / 2 - 0.005),
                               (cx - hw * 0.96, cx + hw * 0.96, -L * 0.25, L / 2 - 0.002)), "body"))
    if p.get("catamaran"):
        parts.append((*box((0, 0.05, H * 1.05), (W * 0.9, L * 0.5, 0.03)), "wood"))
    if p.get("cabin"):
        a, b, ch = p["cabin"]
        parts.append((*frustum(H, H + ch, (-W * 0.3, W * 0.3, -L / 2 + a * L, -L / 2 + b * L),
                               (-W * 0.26, W * 0.26, -L / 2 + a * L + 0.04, -L / 2 + b * L)), "glass"))
    if p.get("mast"):
        mh = p["mast"]
        my = p.get("mast_y", -0.1) * L
        parts.append((*cylinder((0, my, H), (0, my, H + mh), 0.01, 8), "metal"))
        parts.append((*fin(my + 0.01, my + 0.35 * L, my + 0.01, my + 0.03, H + 0.05, H + mh * 0.95, thick=0.006), "sail"))
        if p.get("jib"):
            parts.append((*fin(-L / 2 + 0.05, my - 0.01, my - 0.02, my - 0.01, H + 0.03, H + mh * 0.8, thick=0.006), "sail"))
    if p.get("motor"):
        parts.append((*box((0, L / 2 + 0.02, H * 0.8), (0.06, 0.05, 0.12)), "metal"))
    if p.get("wheelhouse"):
        parts.append((*box((0, -0.05 * L, H + 0.09), (W * 0.55, 0.22 * L, 0.18)), "glass"))
        parts.append((*cylinder((0, 0.2 * L, H), (0, 0.2 * L, H + 0.35), 0.012, 8), "metal"))
    return parts


BOAT = [
    ("motorboat", dict(L=1.0, W=0.36, H=0.14, cabin=(0.25, 0.55, 0.1), motor=True)),
    ("sailboat", dict(L=1.0, W=0.3, H=0.12, mast=0.9, jib=True, mast_y=-0.08)),
    ("canoe", dict(L=1.0, W=0.18, H=0.08, keel=0.3)),
    ("fishing", dict(L=1.0, W=0.38, H=0.18, wheelhouse=True)),
    ("yacht", dict(L=1.1, W=0.34, H=0.16, cabin=(0.22, 0.8, 0.13))),
    ("dinghy", dict(L=0.6, W=0.3, H=0.1, mast=0.55, mast_y=-0.05, keel=0.7)),
    ("catamaran", dict(L=1.0, W=0.55, H=0.1, mast=0.8, catamaran=True, mast_y=0.0)),
]

# ----------------------------------------------------------------------------------------------------

_BUILDERS: dict[str, tuple[Callable[[dict], list], list]] = {
    "car": (_car, CAR),
    "bus": (_bus, BUS),
    "aeroplane": (_aeroplane, AEROPLANE),
    "sofa": (_sofa, SOFA),
    "chair": (_chair, CHAIR),
    "bottle": (_bottle, BOTTLE),
    "tvmonitor": (_tv, TVMONITOR),
    "boat": (_boat, BOAT),
}

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


def write_off(path: str | os.PathLike, verts: np.ndarray, faces: np.ndarray) -> None:
    """OFF text file, written to a temp file and renamed into place."""
    path = Path(path)
    lines = ["OFF", f"{len(verts)} {len(faces)} 0"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    from ntdm_cli.fsutil import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


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
