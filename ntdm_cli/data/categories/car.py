"""Procedural car CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split."""

from __future__ import annotations

from ntdm_cli.data.primitives import frustum, box, cylinder


def build(p: dict) -> list:
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
    for sx in (-1, 1):  # white headlamps at the front (-y), red tail lamps at the back (+y)
        parts.append((*box((sx * W * 0.32, -L / 2 + taper / 2, z1 - 0.03), (W * 0.18, 0.02 + taper, 0.03)), "light"))
        parts.append((*box((sx * W * 0.34, L / 2 - 0.02 * L, z1 - 0.035), (W * 0.16, 0.03, 0.035)), "tail"))
    return parts


SUBTYPES = [
    ("sedan", dict(L=1.0, W=0.40, clear=0.05, body_h=0.16, cab=(0.30, 0.80), slope=(0.12, 0.12), cab_h=0.12, wheel_r=0.075)),
    ("hatchback", dict(L=0.86, W=0.40, clear=0.05, body_h=0.17, cab=(0.30, 0.98), slope=(0.13, 0.05), cab_h=0.14, wheel_r=0.075)),
    ("suv", dict(L=1.0, W=0.43, clear=0.09, body_h=0.21, cab=(0.28, 0.98), slope=(0.10, 0.02), cab_h=0.17, wheel_r=0.095, roof_box=True)),
    ("pickup", dict(L=1.05, W=0.43, clear=0.09, body_h=0.19, cab=(0.30, 0.58), slope=(0.08, 0.02), cab_h=0.16, wheel_r=0.095, bed=True)),
    ("sports", dict(L=0.98, W=0.44, clear=0.035, body_h=0.12, cab=(0.38, 0.78), slope=(0.17, 0.14), cab_h=0.09, wheel_r=0.07, nose=0.12, spoiler=True)),
    ("van", dict(L=1.0, W=0.42, clear=0.07, body_h=0.22, cab=(0.12, 0.99), slope=(0.10, 0.01), cab_h=0.22, wheel_r=0.08, nose=0.08)),
    ("wagon", dict(L=1.04, W=0.41, clear=0.05, body_h=0.16, cab=(0.30, 0.97), slope=(0.12, 0.03), cab_h=0.13, wheel_r=0.075)),
]
