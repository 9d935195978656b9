"""Procedural bicycle CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split.

Solid disc wheels (as coarse CAD models draw them); the frame is tubes between the bottom bracket, the
seat cluster, the head tube and the axles, its stays and fork blades running along the wheels' sides.
Subtypes differ in wheel size, wheelbase, tyre width and frame height. Length along y (front wheel at
-y), wheels touch z = 0."""

from __future__ import annotations

import math

import numpy as np

from ntdm_cli.data.primitives import box, cylinder


def wheel(y: float, r: float, width: float, hub_w: float = 0.05) -> list:
    """A solid wheel in the y-z plane (as coarse CAD models draw it): a tyre disc of ``width`` along x,
    a proud rim/spoke disc and the hub. Returns parts with roles."""
    return [(*cylinder((-width / 2, y, r), (width / 2, y, r), r, 20), "tire"),
            (*cylinder((-width / 2 - 0.003, y, r), (width / 2 + 0.003, y, r), r * 0.82, 16), "metal"),
            (*cylinder((-hub_w / 2 - 0.005, y, r), (hub_w / 2 + 0.005, y, r), 0.02, 8), "metal")]


def build(p: dict) -> list:
    R, wb, tube = p["wheel_r"], p["wheelbase"], p.get("tube", 0.022)
    tw = p.get("tyre_w", 0.04)  # tyre (wheel) width along x
    yf, yr = -wb / 2, wb / 2  # front and rear axles
    parts = []
    for y in (yf, yr):
        parts += wheel(y, R, tw)
    if p.get("tandem"):
        bbs = [(yf + 0.42 * wb, R - 0.06), (yr - 0.28 * wb, R - 0.06)]
    else:
        bbs = [(yr - p.get("chainstay", 0.42) * wb, R - 0.06)]
    seat_h = p["seat_h"]  # seat tube length above the bottom bracket
    hy, hz = yf + p.get("head_y", 0.18) * wb, p.get("head_z", R + 0.28)  # head tube top
    hz0 = hz - p.get("head_len", 0.1)
    # fork: two blades from the head tube bottom to the front axle, steerer through the head tube
    parts.append((*cylinder((0, hy + 0.02, hz0), (0, hy, hz + 0.02), tube * 1.2, 8), "body"))
    for sx in (-1, 1):
        parts.append((*cylinder((0, hy + 0.02, hz0), (sx * tw / 2, yf, R), tube * 0.9, 6), "body"))
    seats = []
    for i, (by, bz) in enumerate(bbs):
        top = (by + 0.3 * seat_h, bz + seat_h)
        seats.append(top)
        parts.append((*cylinder((0, by, bz), (0, *top), tube, 8), "body"))  # seat tube
        parts.append((*cylinder((-0.04, by, bz), (0.04, by, bz), 0.02, 8), "metal"))  # bottom bracket
        for sx in (-1, 1):  # cranks and pedals
            cy, cz = by + sx * 0.07, bz - sx * 0.06
            parts.append((*box(((0.05 + 0.005) * sx, (by + cy) / 2, (bz + cz) / 2), (0.01, abs(cy - by) + 0.01, abs(cz - bz) + 0.01)), "metal"))
            parts.append((*box((0.08 * sx, cy, cz), (0.05, 0.03, 0.01)), "metal"))
        if i == 0:
            if p.get("step_through"):  # low, curved down tube instead of a top tube
                mid = (0, (by + hy) / 2, bz + 0.06)
                parts.append((*cylinder((0, by, bz), mid, tube * 1.3, 8), "body"))
                parts.append((*cylinder(mid, (0, hy, hz0 + 0.02), tube * 1.3, 8), "body"))
            else:
                parts.append((*cylinder((0, by, bz), (0, hy, hz0 + 0.02), tube * 1.2, 8), "body"))  # down tube
                parts.append((*cylinder((0, *top), (0, hy, hz - 0.01), tube, 8), "body"))  # top tube
        else:  # tandem: the second frame triangle joins the first seat tube
            parts.append((*cylinder((0, by, bz), (0, *bbs[0]), tube, 8), "body"))
            parts.append((*cylinder((0, *top), (0, *seats[0]), tube, 8), "body"))
            parts.append((*cylinder((0, by, bz), (0, *seats[0]), tube, 8), "body"))
    by, bz = bbs[-1]
    top = seats[-1]
    for sx in (-1, 1):  # chain stays and seat stays to the rear axle
        parts.append((*cylinder((sx * 0.02, by, bz), (sx * tw / 2, yr, R), tube * 0.8, 6), "body"))
        parts.append((*cylinder((sx * 0.015, top[0], top[1] - 0.02), (sx * tw / 2, yr, R), tube * 0.7, 6), "body"))
    post = p.get("post", 0.08)
    for sy, sz in seats:  # seat posts and saddles
        parts.append((*cylinder((0, sy, sz), (0, sy + 0.3 * post, sz + post), tube, 8), "metal"))
        parts.append((*box((0, sy + 0.3 * post + 0.02, sz + post + 0.015), (0.06, 0.14, 0.03)), "seat"))
    # stem and handlebar
    bar_z, bar_w = hz + p.get("stem", 0.06), p.get("bar_w", 0.14)  # bar_w: half the bar width
    stem_end = (0, hy - 0.05, bar_z)
    parts.append((*cylinder((0, hy, hz), stem_end, tube, 8), "metal"))
    parts.append((*cylinder((-bar_w, stem_end[1], bar_z), (bar_w, stem_end[1], bar_z), 0.015, 8), "metal"))
    if p.get("drops"):
        for sx in (-1, 1):
            parts.append((*cylinder((sx * bar_w, stem_end[1], bar_z), (sx * bar_w, stem_end[1] - 0.06, bar_z - 0.08), 0.015, 8), "metal"))
    else:
        for sx in (-1, 1):
            parts.append((*cylinder((sx * bar_w * 0.75, stem_end[1], bar_z), (sx * bar_w, stem_end[1], bar_z), 0.02, 8), "tire"))
    if p.get("basket"):
        parts.append((*box((0, yf - 0.02, hz - 0.02), (0.2, 0.16, 0.12)), "metal"))
    if p.get("rack"):
        parts.append((*box((0, yr - 0.04, R + 0.2), (0.12, 0.3, 0.015)), "metal"))
        for sx in (-1, 1):
            parts.append((*cylinder((sx * 0.05, yr, R), (sx * 0.05, yr - 0.12, R + 0.2), 0.01, 6), "metal"))
    if p.get("fenders"):
        for y in (yf, yr):
            parts += [(*seg, "body") for seg in _arc(y, R, tw)]
    return parts


def _arc(y: float, R: float, tw: float) -> list:
    """A mudguard: short tubes along the upper half of the tyre, just outside it."""
    r = R + 0.012
    pts = [np.array([0.0, y + r * math.cos(a), R + r * math.sin(a)]) for a in np.linspace(0.2, math.pi - 0.2, 8)]
    return [cylinder(pts[k], pts[k + 1], tw / 2 + 0.006, 6) for k in range(len(pts) - 1)]


SUBTYPES = [
    ("road", dict(wheel_r=0.2, wheelbase=0.58, seat_h=0.32, head_z=0.54, drops=True, tyre_w=0.026, tube=0.018)),
    ("mountain", dict(wheel_r=0.23, wheelbase=0.7, seat_h=0.24, head_z=0.52, head_len=0.12, tyre_w=0.06, tube=0.024,
                      bar_w=0.17, stem=0.03)),
    ("city", dict(wheel_r=0.18, wheelbase=0.72, seat_h=0.3, head_z=0.55, step_through=True, basket=True, fenders=True,
                  stem=0.18, post=0.16, tyre_w=0.042)),
    ("bmx", dict(wheel_r=0.13, wheelbase=0.46, seat_h=0.12, head_z=0.33, tyre_w=0.05, tube=0.022, bar_w=0.17, stem=0.13)),
    ("folding", dict(wheel_r=0.1, wheelbase=0.52, seat_h=0.16, head_z=0.34, head_len=0.06, step_through=True, post=0.3,
                     stem=0.26, tyre_w=0.035)),
    ("cruiser", dict(wheel_r=0.17, wheelbase=0.88, seat_h=0.2, head_z=0.42, stem=0.24, bar_w=0.18, rack=True,
                     fenders=True, tyre_w=0.09, tube=0.026, post=0.1)),
    ("tandem", dict(wheel_r=0.17, wheelbase=0.95, seat_h=0.25, head_z=0.44, head_y=0.1, tandem=True, tyre_w=0.035)),
]
