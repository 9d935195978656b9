"""Procedural bus CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split."""

from __future__ import annotations

from ntdm_cli.data.primitives import frustum, box, cylinder


def build(p: dict) -> list:
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
    # what tells a real bus's front from its back and its sides apart: a tall windscreen and white
    # headlamps at the front (-y), red tail lamps at the back, the door on the right (+x) behind the front
    # wheels. The windscreen follows the front face's slope (``nose``) and stands just proud of it.
    zw0, zw1 = clear + 0.42 * H, clear + 0.9 * H
    yw = y0 + nose * 0.66 - 0.006
    parts.append((*box((0, yw, (zw0 + zw1) / 2), (W * 0.86, 0.012, zw1 - zw0)), "glass"))
    for sx in (-1, 1):
        parts.append((*box((sx * W * 0.34, -L / 2 - 0.006, clear + 0.16 * H), (W * 0.2, 0.012, 0.07 * H)), "light"))
        parts.append((*box((sx * W * 0.36, L / 2 + 0.006, clear + 0.2 * H), (W * 0.16, 0.012, 0.1 * H)), "tail"))
    yd = ys[0] + wr + 0.06 * L
    parts.append((*box((W / 2 + 0.006, yd, clear + 0.45 * H), (0.012, 0.09 * L, 0.85 * H)), "glass"))
    return parts


SUBTYPES = [
    ("city", dict(L=1.0, W=0.21, H=0.26, clear=0.035, wheel_r=0.045, roof_unit=True)),
    ("coach", dict(L=1.0, W=0.21, H=0.29, clear=0.04, wheel_r=0.045, nose=0.05)),
    ("double_decker", dict(L=0.9, W=0.21, H=0.38, clear=0.035, wheel_r=0.045, double=True)),
    ("minibus", dict(L=0.62, W=0.2, H=0.24, clear=0.04, wheel_r=0.045, nose=0.08)),
    ("school", dict(L=0.95, W=0.21, H=0.26, clear=0.045, wheel_r=0.048, hood=True)),
    ("articulated", dict(L=1.0, W=0.17, H=0.21, clear=0.03, wheel_r=0.036, articulated=True)),
]
