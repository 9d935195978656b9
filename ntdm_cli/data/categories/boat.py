"""Procedural boat CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split."""

from __future__ import annotations

import numpy as np

from ntdm_cli.data.primitives import hexa, frustum, box, cylinder, fin


def build(p: dict) -> list:
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


SUBTYPES = [
    ("motorboat", dict(L=1.0, W=0.36, H=0.14, cabin=(0.25, 0.55, 0.1), motor=True)),
    ("sailboat", dict(L=1.0, W=0.3, H=0.12, mast=0.9, jib=True, mast_y=-0.08)),
    ("canoe", dict(L=1.0, W=0.18, H=0.08, keel=0.3)),
    ("fishing", dict(L=1.0, W=0.38, H=0.18, wheelhouse=True)),
    ("yacht", dict(L=1.1, W=0.34, H=0.16, cabin=(0.22, 0.8, 0.13))),
    ("dinghy", dict(L=0.6, W=0.3, H=0.1, mast=0.55, mast_y=-0.05, keel=0.7)),
    ("catamaran", dict(L=1.0, W=0.55, H=0.1, mast=0.8, catamaran=True, mast_y=0.0)),
]
