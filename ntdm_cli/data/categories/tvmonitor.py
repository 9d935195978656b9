"""Procedural tvmonitor CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split."""

from __future__ import annotations

import math

import numpy as np

from ntdm_cli.data.primitives import hexa, frustum, box


def build(p: dict) -> list:
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


SUBTYPES = [
    ("flat", dict(W=0.75, H=0.45, D=0.05, base_z=0.12)),
    ("crt", dict(W=0.55, H=0.45, D=0.5, base_z=0.0, crt=True)),
    ("wide", dict(W=0.9, H=0.4, D=0.04, base_z=0.1, legs=True)),
    ("monitor", dict(W=0.55, H=0.36, D=0.06, base_z=0.2, base_w=0.25)),
    ("wall", dict(W=0.8, H=0.47, D=0.04, base_z=0.0)),
    ("curved", dict(W=0.85, H=0.38, D=0.05, base_z=0.14, curved=0.8)),
]
