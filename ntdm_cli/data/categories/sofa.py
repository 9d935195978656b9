"""Procedural sofa CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split."""

from __future__ import annotations

from ntdm_cli.data.primitives import frustum, box, cylinder


def build(p: dict) -> list:
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


SUBTYPES = [
    ("three_seater", dict(W=1.0, D=0.42, seat_z=0.2, back_h=0.2, arm=0.09, cushions=3)),
    ("two_seater", dict(W=0.75, D=0.42, seat_z=0.2, back_h=0.22, arm=0.1, cushions=2)),
    ("armless", dict(W=0.85, D=0.38, seat_z=0.19, back_h=0.18, arm=0.0, cushions=3, leg=0.07)),
    ("lounge", dict(W=1.0, D=0.5, seat_z=0.16, back_h=0.16, arm=0.14, cushions=2, arm_h=0.06, recline=0.8)),
    ("chaise", dict(W=0.95, D=0.42, seat_z=0.2, back_h=0.2, arm=0.08, cushions=3, chaise=True)),
    ("roundarm", dict(W=0.9, D=0.44, seat_z=0.2, back_h=0.22, arm=0.09, cushions=2, round_arms=True)),
]
