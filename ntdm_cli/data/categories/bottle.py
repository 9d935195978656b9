"""Procedural bottle CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split."""

from __future__ import annotations

from ntdm_cli.data.primitives import box, lathe, cylinder


def _radius_at(profile, z: float) -> float:
    """The lathe profile's radius at height ``z`` (linear between its points)."""
    for (r0, h0), (r1, h1) in zip(profile, profile[1:]):
        if h0 <= z <= h1:
            return r0 + (r1 - r0) * (z - h0) / max(h1 - h0, 1e-9)
    return profile[-1][0]


def build(p: dict) -> list:
    prof = p["profile"]
    H = prof[-1][1]
    parts = [(*lathe([(r, h) for r, h in prof], p.get("n", 20), center=(0, 0, 0), scale_xy=p.get("xy", (1, 1))), "glass")]
    if p.get("label"):  # a front label (-y), as on real bottles: it shows which way the bottle faces
        a, b, r = p["label"]
        ry = r * p.get("xy", (1, 1))[1]  # the body's depth at the label
        parts.append((*box((0, -ry * 0.93, (a + b) / 2 * H), (r * 1.15, ry * 0.2, (b - a) * H)), "label"))
    cap_r = prof[-1][0] * 1.08
    parts.append((*cylinder((0, 0, H), (0, 0, H + 0.05), cap_r, 14), "metal"))
    if p.get("handle"):  # a bar beside the body, joined to it by two arms, as real jug handles are
        x = prof[2][0] + 0.05
        z0, z1 = 0.47 * H, 0.77 * H
        parts.append((*box((x, 0, (z0 + z1) / 2), (0.04, 0.03, z1 - z0)), "glass"))
        for z, r in ((z0 + 0.02, _radius_at(prof, z0 + 0.02)), (z1 - 0.02, _radius_at(prof, z1 - 0.02))):
            inner = 0.8 * r  # reaches into the body
            parts.append((*box(((inner + x) / 2, 0, z), (x - inner, 0.03, 0.04)), "glass"))
    return parts


SUBTYPES = [
    ("wine", dict(profile=[(0.14, 0), (0.15, 0.02), (0.15, 0.55), (0.12, 0.66), (0.05, 0.76), (0.045, 0.95)], label=(0.2, 0.45, 0.153))),
    ("water", dict(profile=[(0.16, 0), (0.17, 0.03), (0.16, 0.3), (0.17, 0.55), (0.15, 0.68), (0.06, 0.8), (0.055, 0.88)], label=(0.35, 0.5, 0.172))),
    ("beer", dict(profile=[(0.12, 0), (0.13, 0.02), (0.13, 0.45), (0.1, 0.58), (0.045, 0.72), (0.045, 0.8)], label=(0.15, 0.38, 0.133))),
    ("jug", dict(profile=[(0.2, 0), (0.23, 0.05), (0.23, 0.45), (0.18, 0.58), (0.08, 0.7), (0.07, 0.76)], handle=True)),
    ("flask", dict(profile=[(0.2, 0), (0.22, 0.03), (0.22, 0.5), (0.12, 0.62), (0.06, 0.7), (0.06, 0.78)], n=4, xy=(1.0, 0.55), label=(0.15, 0.4, 0.224))),
    ("soda", dict(profile=[(0.15, 0), (0.13, 0.05), (0.16, 0.2), (0.13, 0.35), (0.16, 0.55), (0.1, 0.75), (0.055, 0.85), (0.05, 0.9)], label=(0.22, 0.58, 0.16))),
    ("vase", dict(profile=[(0.1, 0), (0.2, 0.2), (0.23, 0.38), (0.16, 0.6), (0.08, 0.72), (0.12, 0.85)])),
]
