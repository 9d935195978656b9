"""Procedural aeroplane CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split."""

from __future__ import annotations

from ntdm_cli.data.primitives import box, lathe, cylinder, wing, fin, mirror_x, along_y


def build(p: dict) -> list:
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


SUBTYPES = [
    ("airliner", dict(fuse_len=1.0, fuse_r=0.055, span=0.95, sweep=0.18, chord=0.2, taper=0.35, engines=2, fin_h=0.16)),
    ("jumbo", dict(fuse_len=1.05, fuse_r=0.07, span=1.05, sweep=0.22, chord=0.24, taper=0.3, engines=4, fin_h=0.18)),
    ("fighter", dict(fuse_len=0.9, fuse_r=0.05, span=0.5, sweep=0.3, chord=0.42, taper=0.15, fin_h=0.13, wing_y=0.1, wing_z=0.0, hstab=0.6)),
    ("propeller", dict(fuse_len=0.75, fuse_r=0.05, span=1.0, sweep=0.0, chord=0.14, taper=0.7, fin_h=0.12, wing_z=0.8, wing_y=-0.1, propeller=True)),
    ("glider", dict(fuse_len=0.7, fuse_r=0.035, span=1.3, sweep=0.02, chord=0.09, taper=0.5, fin_h=0.12, wing_z=0.6, wing_y=-0.07)),
    ("jet", dict(fuse_len=0.85, fuse_r=0.045, span=0.72, sweep=0.14, chord=0.16, taper=0.45, engines=2, fin_h=0.15, wing_y=0.02)),
    ("biplane", dict(fuse_len=0.7, fuse_r=0.05, span=0.8, sweep=0.0, chord=0.13, taper=1.0, fin_h=0.11, wing_z=-0.6, wing_y=-0.12, biplane=True, propeller=True)),
]
