"""Procedural train CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``; ``SUBTYPES``
lists ``(name, params)``, the last one held out for the OOD shape split.

A leading car (locomotive or cab car) and coupled carriages in a row along y (the front at -y), on
bogies with small wheels; the rails' top is z = 0. Long bodies: the whole train is about 1 unit long
and a tenth as wide."""

from __future__ import annotations

from ntdm_cli.data.primitives import along_y, box, cylinder, frustum, lathe


def _bogies(y0: float, y1: float, W: float, r: float) -> list:
    """Two bogies (frame + two axles of wheels each) under a car spanning [y0, y1]."""
    parts = []
    for yc in (y0 + 0.16 * (y1 - y0), y1 - 0.16 * (y1 - y0)):
        parts.append((*box((0, yc, r + 0.005), (W * 0.8, 4.2 * r, 0.02)), "metal"))
        for dy in (-1.1 * r, 1.1 * r):
            for sx in (-1, 1):
                parts.append((*cylinder((sx * W * 0.3, yc + dy, r), (sx * W * 0.42, yc + dy, r), r, 10), "tire"))
    return parts


def _carriage(y0: float, y1: float, p: dict, freight: str = "") -> list:
    """A carriage body on bogies between y0 < y1: box body, window band, rounded roof; freight
    wagons are a box van, a tank (a horizontal cylinder) or an open hopper."""
    W, H, clear, r = p["W"], p["H"], p["clear"], p["wheel_r"]
    parts = _bogies(y0, y1, W, r)
    if freight == "tank":
        parts.append((*box((0, (y0 + y1) / 2, clear + 0.01), (W * 0.9, y1 - y0, 0.02)), "metal"))
        parts.append((*along_y(lathe([(H * 0.38, 0.0), (H * 0.42, 0.02), (H * 0.42, y1 - y0 - 0.02), (H * 0.38, y1 - y0)],
                                     14, center=(0, clear + 0.02 + H * 0.42, -y1))), "body"))
        return parts
    top = clear + (H if freight != "hopper" else 0.7 * H)
    parts.append((*frustum(clear, top, (-W / 2, W / 2, y0, y1), (-W / 2, W / 2, y0, y1)), "body"))
    if not freight:
        zc = clear + 0.62 * H
        parts.append((*box((0, (y0 + y1) / 2, zc), (W + 0.006, (y1 - y0) * 0.9, 0.22 * H)), "glass"))
        parts.append((*frustum(top, top + p.get("roof", 0.025), (-W / 2, W / 2, y0 + 0.005, y1 - 0.005),
                               (-W * 0.3, W * 0.3, y0 + 0.01, y1 - 0.01)), "metal"))
    return parts


def _front(y0: float, y1: float, p: dict) -> list:
    """The leading car between y0 (its front) and y1, shaped by ``p["nose"]``: flat (metro, tram),
    cab (diesel locomotive: hood ahead of a raised cab), bullet (high-speed: long tapered nose) or
    steam (boiler, chimney and cab, on big driving wheels)."""
    W, H, clear, r = p["W"], p["H"], p["clear"], p["wheel_r"]
    nose = p["nose"]
    if nose == "steam":
        parts = []
        br = H * 0.32
        parts.append((*along_y(lathe([(br, 0.0), (br, y1 - y0 - 0.1)], 16, center=(0, clear + 0.02 + br, -(y1 - 0.1)))), "body"))
        parts.append((*cylinder((0, y0 + 0.05, clear + 0.02 + 2 * br - 0.01), (0, y0 + 0.05, clear + H * 0.95), br * 0.35, 10), "metal"))
        parts.append((*box((0, y1 - 0.06, clear + H * 0.5), (W, 0.12, H)), "body"))
        parts.append((*box((0, y1 - 0.06, clear + H * 0.75), (W + 0.006, 0.08, 0.2 * H)), "glass"))
        parts.append((*box((0, (y0 + y1) / 2, clear + 0.01), (W, y1 - y0, 0.03)), "metal"))
        for k in range(3):  # driving wheels, taller than the bogie wheels
            y = y0 + 0.1 + k * (y1 - y0 - 0.18) / 2.5
            for sx in (-1, 1):
                parts.append((*cylinder((sx * W * 0.3, y, 1.8 * r), (sx * W * 0.42, y, 1.8 * r), 1.8 * r, 12), "tire"))
        parts.append((*cylinder((-0.05, y0 - 0.01, clear * 0.6), (0.05, y0 - 0.01, clear * 0.6), 0.012, 6), "light"))
        return parts
    if nose == "bullet":
        n = p.get("nose_len", 0.12)
        parts = _carriage(y0 + n, y1, p)
        parts.append((*frustum(clear, clear + H, (-W / 2, W / 2, y0 + n * 0.1, y0 + n),
                               (-W * 0.25, W * 0.25, y0 + n * 0.75, y0 + n)), "body"))
        parts.append((*frustum(clear + H * 0.55, clear + H * 0.85, (-W * 0.38, W * 0.38, y0 + n * 0.45, y0 + n * 0.7),
                               (-W * 0.28, W * 0.28, y0 + n * 0.7, y0 + n * 0.85)), "glass"))
        return parts
    parts = _carriage(y0, y1, p)
    if nose == "cab":  # diesel: a lower hood ahead of the cab, the cab roof raised
        parts = _bogies(y0, y1, W, r)
        cab = y0 + 0.3 * (y1 - y0)
        parts.append((*box((0, (y0 + y1) / 2, clear + 0.5 * H * 0.7), (W, y1 - y0, H * 0.7)), "body"))
        parts.append((*box((0, (y0 + cab) / 2 + 0.01, clear + H * 0.85), (W * 0.95, cab - y0 - 0.02, H * 0.3)), "body"))
        parts.append((*box((0, y0 + 0.012, clear + H * 0.85), (W * 0.8, 0.01, H * 0.18)), "glass"))
    else:  # flat front with a windscreen and lights
        parts.append((*box((0, y0 - 0.003, clear + 0.65 * H), (W * 0.85, 0.01, 0.3 * H)), "glass"))
    for sx in (-1, 1):
        parts.append((*box((sx * W * 0.32, y0 - 0.004, clear + 0.2 * H), (0.02, 0.01, 0.015)), "light"))
    if p.get("pantograph"):
        parts.append((*cylinder((0, y0 + 0.12, clear + H + 0.02), (0, y0 + 0.16, clear + H + 0.08), 0.004, 4), "metal"))
        parts.append((*box((0, y0 + 0.16, clear + H + 0.08), (W * 0.6, 0.01, 0.006)), "metal"))
    return parts


def build(p: dict) -> list:
    L, n, gap = p["L"], p["cars"], p.get("gap", 0.012)
    lengths = [p.get("front_len", 1.0)] + [1.0] * (n - 1)  # relative car lengths
    unit = (L - gap * (n - 1)) / sum(lengths)
    parts, y = [], -L / 2
    freight = p.get("freight", [])
    for k, rel in enumerate(lengths):
        y1 = y + rel * unit
        if k == 0:
            parts += _front(y, y1, p)
        else:
            parts += _carriage(y, y1, p, freight[(k - 1) % len(freight)] if freight else "")
            # coupler bridging the gap to the car ahead
            parts.append((*box((0, y - gap / 2, p["clear"] + 0.02), (0.02, gap + 0.02, 0.015)), "metal"))
        y = y1 + gap
    return parts


SUBTYPES = [
    ("highspeed", dict(L=1.0, cars=2, W=0.11, H=0.13, clear=0.035, wheel_r=0.017, nose="bullet", nose_len=0.26, front_len=1.2)),
    ("metro", dict(L=0.9, cars=3, W=0.135, H=0.15, clear=0.04, wheel_r=0.017, nose="flat")),
    ("diesel", dict(L=1.0, cars=2, W=0.12, H=0.18, clear=0.05, wheel_r=0.02, nose="cab", freight=["box"], front_len=0.8)),
    ("tram", dict(L=0.75, cars=2, W=0.1, H=0.13, clear=0.028, wheel_r=0.015, nose="flat", pantograph=True)),
    ("commuter", dict(L=1.1, cars=3, W=0.14, H=0.2, clear=0.04, wheel_r=0.018, nose="flat", roof=0.04, pantograph=True)),
    ("freight", dict(L=1.0, cars=3, W=0.125, H=0.15, clear=0.045, wheel_r=0.02, nose="cab", freight=["hopper", "tank"],
                     front_len=0.85, gap=0.02)),
    ("steam", dict(L=0.9, cars=2, W=0.12, H=0.17, clear=0.04, wheel_r=0.018, nose="steam", front_len=1.1)),
]
