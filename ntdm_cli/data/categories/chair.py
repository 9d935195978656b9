"""Procedural chair CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split."""

from __future__ import annotations

import math

from ntdm_cli.data.primitives import frustum, box, cylinder


def build(p: dict) -> list:
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


SUBTYPES = [
    ("dining", dict(W=0.42, D=0.42, seat_z=0.45, back_h=0.42, round_legs=True)),
    ("armchair", dict(W=0.5, D=0.5, seat_z=0.42, back_h=0.4, arms=True)),
    ("slatback", dict(W=0.42, D=0.4, seat_z=0.45, back_h=0.45, slats=5, round_legs=True)),
    ("office", dict(W=0.46, D=0.44, seat_z=0.48, back_h=0.4, office=True, back_taper=0.8)),
    ("stool_back", dict(W=0.36, D=0.36, seat_z=0.62, back_h=0.22, splay=0.05, round_legs=True)),
    ("highback", dict(W=0.44, D=0.42, seat_z=0.43, back_h=0.62, lean=0.08)),
    ("rocking", dict(W=0.46, D=0.46, seat_z=0.42, back_h=0.5, arms=True, rockers=True, round_legs=True)),
]
