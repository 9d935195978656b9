"""Procedural dining-table CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``;
``SUBTYPES`` lists ``(name, params)``, the last one held out for the OOD shape split.

Long side along x, depth along y (the front faces -y), floor at z = 0. Legs are sturdy (a deformed
sphere must reach down each of them), rails sit right under the top; subtypes differ in the top's
length/depth/height ratio and shape and in the leg count and placement."""

from __future__ import annotations

from ntdm_cli.data.primitives import box, cylinder, frustum, lathe


def _leg(x: float, y: float, top_z: float, p: dict) -> tuple:
    """One leg from the floor to ``top_z`` at (x, y): square tapered, or round (``round_legs``), with
    ``splay`` moving the foot outwards."""
    sx, sy = (1 if x > 0 else -1), (1 if y > 0 else -1)
    splay, t = p.get("splay", 0.0), p.get("leg", 0.06)
    foot = (x + sx * splay, y + sy * splay, 0.0)
    if p.get("round_legs"):
        return (*cylinder(foot, (x, y, top_z), t * 0.6, 8), p.get("leg_role", "wood"))
    tb = t * p.get("taper", 1.0)
    return (*frustum(0.0, top_z, (foot[0] - tb / 2, foot[0] + tb / 2, foot[1] - tb / 2, foot[1] + tb / 2),
                     (x - t / 2, x + t / 2, y - t / 2, y + t / 2)), p.get("leg_role", "wood"))


def build(p: dict) -> list:
    L, D, H, th = p["L"], p["D"], p["H"], p.get("top", 0.03)
    zt = H - th  # underside of the top
    parts = []
    if p.get("round"):  # round or oval top: a flat lathe (its local x is the world's y), squashed in y for an oval
        parts.append((*lathe([(L / 2, zt), (L / 2, H)], 28, scale_xy=(D / L, 1.0)), p.get("top_role", "wood")))
    else:
        parts.append((*box((0, 0, H - th / 2), (L, D, th)), p.get("top_role", "wood")))
    inset = p.get("inset", 0.05)
    lx, ly = L / 2 - inset, D / 2 - inset
    if p.get("pedestal"):  # column on a foot, with a spider under the top
        parts.append((*lathe([(0.06, 0.0), (0.18, 0.02), (0.07, 0.08), (0.045, 0.15), (0.045, zt - 0.05), (0.08, zt)],
                             16), "wood"))
        parts.append((*box((0, 0, zt - 0.02), (L * 0.6, 0.05, 0.04)), "wood"))
        parts.append((*box((0, 0, zt - 0.02), (0.05, D * 0.6, 0.04)), "wood"))
    elif p.get("trestle"):  # two end frames (upright + foot + cleat) and a stretcher
        for sx in (-1, 1):
            x = sx * lx
            parts.append((*box((x, 0, zt / 2), (0.05, 0.08, zt)), "wood"))
            parts.append((*box((x, 0, 0.025), (0.07, D * 0.85, 0.05)), "wood"))
            parts.append((*box((x, 0, zt - 0.02), (0.06, D * 0.8, 0.04)), "wood"))
        parts.append((*box((0, 0, zt - 0.04), (2 * lx, 0.05, 0.08)), "wood"))  # beam under the top
    else:
        xs = [-lx, lx] if not p.get("six_legs") else [-lx, 0.0, lx]
        for x in xs:
            for y in (-ly, ly):
                parts.append(_leg(x, y, zt, p))
        if p.get("apron", True):  # rails under the top between the legs
            a = p.get("apron_h", 0.04)
            for y in (-ly, ly):
                parts.append((*box((0, y, zt - a / 2), (2 * lx, 0.02, a)), "wood"))
            for x in (-lx, lx):
                parts.append((*box((x, 0, zt - a / 2), (0.02, 2 * ly, a)), "wood"))
    return parts


SUBTYPES = [
    ("four_leg", dict(L=1.0, D=0.5, H=0.48, leg=0.07, inset=0.035)),
    ("round_pedestal", dict(L=0.72, D=0.72, H=0.45, round=True, pedestal=True)),
    ("trestle", dict(L=1.0, D=0.45, H=0.42, top=0.05, trestle=True, inset=0.12)),
    ("square", dict(L=0.66, D=0.66, H=0.47, leg=0.08, inset=0.14, splay=0.02, apron=False)),
    ("oval", dict(L=1.1, D=0.68, H=0.42, round=True, round_legs=True, leg=0.12, splay=0.03, inset=0.2, apron=False)),
    ("glass", dict(L=0.95, D=0.6, H=0.4, top=0.02, top_role="glass", round_legs=True, leg=0.11, leg_role="metal",
                   inset=0.04, apron_h=0.025)),
    ("banquet", dict(L=1.0, D=0.36, H=0.4, six_legs=True, leg=0.05, inset=0.04)),
]
