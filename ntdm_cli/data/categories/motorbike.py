"""Procedural motorbike CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``;
``SUBTYPES`` lists ``(name, params)``, the last one held out for the OOD shape split.

Length along y (front wheel at -y), wheels touch z = 0. Thin parts: fork tubes, handlebar, exhaust,
swingarm; bulky parts: tank, engine block with a crankcase filling the space between the wheels, seat,
fairings, a scooter's rear cowl."""

from __future__ import annotations

from ntdm_cli.data.primitives import along_y, box, cylinder, frustum, lathe


def _wheel(y: float, r: float, w: float) -> list:
    """A wheel at axle position y: tyre (a short cylinder along x) and a proud hub disc."""
    return [(*cylinder((-w / 2, y, r), (w / 2, y, r), r, 18), "tire"),
            (*cylinder((-w / 2 - 0.004, y, r), (w / 2 + 0.004, y, r), r * 0.55, 12), "metal")]


def build(p: dict) -> list:
    R, Rr, wb = p["wheel_r"], p.get("rear_r", p["wheel_r"]), p["wheelbase"]
    tw = p.get("tyre_w", 0.07)
    yf, yr = -wb / 2, wb / 2
    rear_w = p.get("rear_w", 1.2)  # rear tyre width / front tyre width
    parts = _wheel(yf, R, tw) + _wheel(yr, Rr, tw * rear_w)
    # steering head above and behind the front axle (rake), fork tubes down to the axle
    hy, hz = yf + p.get("rake", 0.12), p.get("head_z", 0.5)
    for sx in (-1, 1):
        parts.append((*cylinder((sx * (tw / 2 + 0.015), yf, R), (sx * 0.05, hy, hz), 0.024, 8), "metal"))
    # handlebar: riser and bar across
    bz, bw = hz + p.get("bar_rise", 0.06), p.get("bar_w", 0.36)
    by = hy + p.get("bar_back", 0.04)
    parts.append((*cylinder((0, hy, hz - 0.02), (0, by, bz), 0.022, 8), "metal"))
    parts.append((*cylinder((-bw / 2, by, bz), (bw / 2, by, bz), 0.02, 8), "metal"))
    for sx in (-1, 1):
        parts.append((*cylinder((sx * bw * 0.35, by, bz), (sx * bw / 2, by, bz), 0.026, 8), "tire"))
    # headlight
    parts.append((*along_y(lathe([(0.045, 0.0), (0.055, 0.03)], 12, center=(0, hz - 0.08, -(hy - 0.05)))), "light"))
    # frame spine, tank, seat, engine, swingarm, exhaust
    sz = p.get("seat_z", 0.45)  # seat top height
    ty0, ty1 = hy + 0.04, hy + p.get("tank", 0.3) * wb
    parts.append((*frustum(sz - 0.1, hz + 0.02, (-0.1, 0.1, ty0 + 0.02, ty1), (-0.08, 0.08, ty0 + 0.05, ty1 - 0.03)), "body"))
    seat_len = p.get("seat_len", 0.3)
    parts.append((*frustum(sz - 0.06, sz, (-0.1, 0.1, ty1, ty1 + seat_len), (-0.09, 0.09, ty1 + 0.01, ty1 + seat_len - 0.02)), "seat"))
    ez = p.get("engine_z", R * 0.7)
    parts.append((*box((0, (ty0 + ty1) / 2 + 0.02, (ez + sz - 0.1) / 2), (0.2, ty1 - ty0 + 0.02, sz - 0.1 - ez)), "metal"))
    if not p.get("floor"):  # crankcase and gearbox between the wheels, below the engine
        cy0, cy1 = yf + R + 0.012, yr - Rr - 0.012
        if cy1 > cy0:
            parts.append((*box((0, (cy0 + cy1) / 2, ez + 0.06), (0.18, cy1 - cy0, 0.12)), "metal"))
    for sx in (-1, 1):
        parts.append((*cylinder((sx * 0.06, ty1 + 0.02, ez + 0.03), (sx * (tw * 0.6 + 0.02), yr, Rr), 0.028, 8), "metal"))
    ex = p.get("exhaust_x", 0.1)
    parts.append((*cylinder((ex, ty0 + 0.06, ez), (ex, yr + 0.06, ez + p.get("exhaust_up", 0.08)), 0.025, 10), "metal"))
    # rear frame under the seat down to the axle region, and a rear fender
    parts.append((*frustum(Rr + 0.04, sz - 0.06, (-0.07, 0.07, ty1 + seat_len * 0.4, yr), (-0.08, 0.08, ty1 + seat_len * 0.3, ty1 + seat_len)), "body"))
    if p.get("fairing"):  # sport / touring front fairing with a windscreen
        fz0, fz1 = hz - 0.16, hz + 0.02
        parts.append((*frustum(fz0, fz1, (-0.13, 0.13, hy - 0.1, ty0 + 0.08), (-0.11, 0.11, hy - 0.05, ty0 + 0.04)), "body"))
        parts.append((*frustum(fz1, fz1 + p["fairing"], (-0.1, 0.1, hy - 0.06, hy + 0.03), (-0.07, 0.07, hy, hy + 0.06)), "glass"))
        parts.append((*frustum(ez, fz0, (-0.12, 0.12, hy + 0.02, ty1 - 0.05), (-0.13, 0.13, hy - 0.08, ty1)), "body"))
    if p.get("high_fenders"):  # dirt bike: tall front mudguard
        parts.append((*box((0, yf - 0.02, 2 * R + 0.05), (0.08, R * 1.2, 0.015)), "body"))
    else:  # front mudguard over the tyre, between the fork legs
        parts.append((*box((0, yf, 2 * R + 0.012), (tw + 0.03, R * 1.1, 0.024)), "body"))
    if p.get("floor"):  # scooter: step-through floor board and leg shield
        parts.append((*box((0, (hy + ty1) / 2 + 0.05, R * 0.9), (0.2, ty1 - hy + 0.1, 0.05)), "body"))
        parts.append((*frustum(R * 0.9, hz, (-0.15, 0.15, hy, hy + 0.08), (-0.11, 0.11, hy - 0.02, hy + 0.04)), "body"))
        # rear cowl over the engine and the rear wheel, under the seat
        parts.append((*frustum(Rr * 0.8, sz - 0.06, (-0.12, 0.12, ty1 - 0.02, yr + Rr * 0.6), (-0.11, 0.11, ty1, yr + Rr * 0.8)), "body"))
    if p.get("cases"):  # touring: top case and panniers
        parts.append((*box((0, ty1 + seat_len + 0.05, sz + 0.08), (0.26, 0.18, 0.16)), "body"))
        for sx in (-1, 1):
            parts.append((*box((sx * (tw * rear_w / 2 + 0.065), yr - 0.05, Rr + 0.1), (0.12, 0.3, 0.2)), "body"))
    if p.get("sidecar"):  # a boat-shaped car on the right on its own wheel
        sw, sl = 0.28, 0.65
        parts.append((*frustum(0.12, 0.42, (0.22, 0.22 + sw, -sl / 2 + 0.08, sl / 2), (0.2, 0.24 + sw, -sl / 2, sl / 2 + 0.02)), "body"))
        parts.append((*cylinder((0.36 - 0.03, 0.05, R * 0.8), (0.36 + 0.03, 0.05, R * 0.8), R * 0.8, 16), "tire"))
        parts.append((*box((0.15, 0.0, 0.22), (0.22, 0.05, 0.04)), "metal"))
    return parts


SUBTYPES = [
    ("sport", dict(wheel_r=0.15, wheelbase=0.74, rake=0.13, head_z=0.46, bar_rise=-0.03, bar_w=0.28, seat_z=0.45, fairing=0.1,
                   tank=0.32, seat_len=0.26, exhaust_up=0.18, rear_w=1.5)),
    ("cruiser", dict(wheel_r=0.18, rear_r=0.15, wheelbase=0.88, rake=0.26, head_z=0.47, bar_rise=0.14, bar_w=0.44, seat_z=0.32,
                     tank=0.28, seat_len=0.28, exhaust_up=0.0, engine_z=0.12, tyre_w=0.06, rear_w=1.9)),
    ("dirt", dict(wheel_r=0.21, rear_r=0.19, wheelbase=0.7, rake=0.13, head_z=0.62, bar_rise=0.07, bar_w=0.42, seat_z=0.58,
                  tank=0.22, seat_len=0.4, tyre_w=0.05, high_fenders=True, exhaust_up=0.22, engine_z=0.2)),
    ("scooter", dict(wheel_r=0.1, wheelbase=0.6, rake=0.08, head_z=0.52, bar_rise=0.06, bar_w=0.32, seat_z=0.4, tank=0.3,
                     seat_len=0.34, tyre_w=0.07, floor=True, engine_z=0.14, exhaust_x=0.1)),
    ("touring", dict(wheel_r=0.17, wheelbase=0.78, rake=0.14, head_z=0.56, bar_rise=0.05, bar_w=0.4, seat_z=0.47, fairing=0.18,
                     tank=0.3, seat_len=0.32, cases=True, rear_w=1.3)),
    ("naked", dict(wheel_r=0.17, wheelbase=0.58, rake=0.1, head_z=0.56, bar_rise=0.12, bar_w=0.38, seat_z=0.53, tank=0.3,
                   seat_len=0.26, exhaust_up=0.08, rear_w=1.3)),
    ("sidecar", dict(wheel_r=0.16, wheelbase=0.74, rake=0.15, head_z=0.5, bar_rise=0.07, bar_w=0.4, seat_z=0.44, tank=0.3,
                     seat_len=0.3, sidecar=True)),
]
