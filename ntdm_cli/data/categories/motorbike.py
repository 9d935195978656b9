"""Procedural motorbike CADs: ``build(params)`` returns the parts ``[(verts, faces, role), ...]``;
``SUBTYPES`` lists ``(name, params)``, the last one held out for the OOD shape split.

Coarse and compact, as PASCAL3D+'s motorbike CADs are: solid disc wheels partly merged into one body
mass (engine/fairing block between the wheels down to about axle height, tank, seat, a tail cowl over
the rear wheel, a solid fork slab over the front wheel), handlebar, headlight and exhaust against it.
Subtypes differ in size, wheel size, wheelbase, height and their own features (fairing and windscreen,
panniers and top case, step-through floor, high mudguard, sidecar). Length along y (front wheel at
-y), wheels touch z = 0."""

from __future__ import annotations

from ntdm_cli.data.primitives import along_y, box, cylinder, frustum, lathe


def _wheel(y: float, r: float, w: float) -> list:
    """A solid wheel at axle position y: tyre disc (a short cylinder along x) and a proud hub disc."""
    return [(*cylinder((-w / 2, y, r), (w / 2, y, r), r, 20), "tire"),
            (*cylinder((-w / 2 - 0.004, y, r), (w / 2 + 0.004, y, r), r * 0.6, 14), "metal")]


def build(p: dict) -> list:
    R, Rr, wb = p["wheel_r"], p.get("rear_r", p["wheel_r"]), p["wheelbase"]
    tw = p.get("tyre_w", 0.09)
    rw = tw * p.get("rear_w", 1.2)  # rear tyre width
    bw = p.get("body_w", 0.18)  # width of the body mass
    yf, yr = -wb / 2, wb / 2
    parts = _wheel(yf, R, tw) + _wheel(yr, Rr, rw)
    hy, hz = yf + p.get("rake", 0.12), p.get("head_z", 0.5)  # steering head
    sz = p.get("seat_z", 0.45)  # seat top
    ty1 = hy + p.get("tank", 0.32) * wb  # tank end = seat front
    seat_len = p.get("seat_len", 0.3)
    bz = p.get("body_z", R * 0.8)  # underside of the body mass
    # fork: a solid slab from the front axle up to the steering head, over the front tyre
    fw = tw + 0.03
    parts.append((*frustum(R * 0.9, hz, (-fw / 2, fw / 2, yf - 0.04, yf + 0.05), (-fw / 2 + 0.01, fw / 2 - 0.01, hy - 0.04, hy + 0.04)), "metal"))
    # handlebar: riser and bar across, grips
    bar_z, bar_w = hz + p.get("bar_rise", 0.06), p.get("bar_w", 0.36)
    by = hy + p.get("bar_back", 0.05)
    parts.append((*cylinder((0, hy, hz - 0.02), (0, by, bar_z), 0.03, 8), "metal"))
    parts.append((*cylinder((-bar_w / 2, by, bar_z), (bar_w / 2, by, bar_z), 0.022, 8), "metal"))
    for sx in (-1, 1):
        parts.append((*cylinder((sx * bar_w * 0.32, by, bar_z), (sx * bar_w / 2, by, bar_z), 0.028, 8), "tire"))
    # headlight
    parts.append((*along_y(lathe([(0.05, 0.0), (0.06, 0.035)], 12, center=(0, hz - 0.07, -(hy - 0.06)))), "light"))
    if p.get("floor"):  # scooter: leg shield, step-through floor board, rear cowl over engine and rear wheel
        fz = p.get("floor_z", R * 1.2)  # floor board top
        parts.append((*frustum(R * 0.5, hz, (-bw / 2 - 0.02, bw / 2 + 0.02, hy - 0.02, hy + 0.22), (-bw / 2, bw / 2, hy - 0.05, hy + 0.05)), "body"))
        parts.append((*box((0, (hy + ty1) / 2 + 0.04, (R * 0.5 + fz) / 2), (bw, ty1 - hy + 0.08, fz - R * 0.5)), "body"))
        parts.append((*frustum(R * 0.5, sz - 0.06, (-bw / 2, bw / 2, ty1 - 0.04, yr + Rr * 0.6), (-bw / 2 + 0.01, bw / 2 - 0.01, ty1, yr + Rr * 1.1)), "body"))
        parts.append((*frustum(sz - 0.06, sz, (-bw / 2 + 0.01, bw / 2 - 0.01, ty1, ty1 + seat_len), (-bw / 2 + 0.02, bw / 2 - 0.02, ty1 + 0.01, ty1 + seat_len - 0.02)), "seat"))
        parts.append((*cylinder((bw / 2 + 0.01, ty1 + 0.05, R * 0.8), (bw / 2 + 0.01, yr + 0.08, R * 0.9), 0.035, 10), "metal"))
        return parts
    # engine / body mass between the wheels, from about axle height up to under the tank and seat
    ez = sz - p.get("tank_h", 0.12)  # tank/body joint
    parts.append((*frustum(bz, ez, (-bw / 2, bw / 2, yf + R * 0.75, yr - Rr * 0.6), (-bw / 2, bw / 2, hy + 0.02, ty1 + seat_len * 0.5)), "metal"))
    # tank up to the steering head
    parts.append((*frustum(ez, hz + 0.02, (-bw / 2 + 0.01, bw / 2 - 0.01, hy + 0.02, ty1), (-bw / 2 + 0.03, bw / 2 - 0.03, hy + 0.04, ty1 - 0.04)), "body"))
    # seat, and the tail cowl over the rear wheel under it
    tail = p.get("tail", 0.0)  # sport: tail raised at the back
    parts.append((*frustum(sz - 0.06, sz, (-bw / 2 + 0.02, bw / 2 - 0.02, ty1, ty1 + seat_len), (-bw / 2 + 0.03, bw / 2 - 0.03, ty1 + 0.01, ty1 + seat_len - 0.02)), "seat"))
    parts.append((*frustum(Rr + 0.02, sz - 0.06 + tail, (-bw / 2 + 0.02, bw / 2 - 0.02, ty1 + seat_len * 0.4, yr + Rr * 0.5), (-bw / 2 + 0.03, bw / 2 - 0.03, ty1 + seat_len * 0.5, yr + Rr * 0.9)), "body"))
    ex = bw / 2 + 0.015
    parts.append((*cylinder((ex, ty1 - 0.05, bz + 0.03), (ex, yr + Rr * 0.6, bz + 0.03 + p.get("exhaust_up", 0.08)), 0.035, 10), "metal"))
    if p.get("fairing"):  # sport / touring front fairing with a windscreen
        fz0, fz1, fw2 = p.get("fairing_z", bz), hz + 0.02, p.get("fairing_w", bw + 0.04) / 2
        parts.append((*frustum(fz0, fz1, (-fw2, fw2, hy - p.get("fairing_low", 0.12), ty1 - 0.05), (-fw2 + 0.01, fw2 - 0.01, hy - 0.06, hy + 0.12)), "body"))
        parts.append((*frustum(fz1, fz1 + p["fairing"], (-bw / 2 + 0.01, bw / 2 - 0.01, hy - 0.06, hy + 0.06), (-bw / 2 + 0.03, bw / 2 - 0.03, hy, hy + 0.08)), "glass"))
    if p.get("high_fenders"):  # dirt bike: tall front mudguard above the tyre
        parts.append((*box((0, yf - 0.02, 2 * R + 0.04), (tw + 0.02, R * 1.1, 0.03)), "body"))
    if p.get("cases"):  # touring: panniers either side of the rear wheel, one block with the tail
        pz0, pw = Rr * 0.7, p.get("fairing_w", bw + 0.04)
        parts.append((*box((0, yr - 0.06, (pz0 + sz - 0.06) / 2), (pw, 0.34, sz - 0.06 - pz0)), "body"))
    if p.get("sidecar"):  # a boat-shaped car on the right on its own wheel
        sw, sl = 0.28, 0.65
        parts.append((*frustum(0.12, 0.42, (0.2, 0.2 + sw, -sl / 2 + 0.08, sl / 2), (0.18, 0.22 + sw, -sl / 2, sl / 2 + 0.02)), "body"))
        parts.append((*cylinder((0.34 - 0.04, 0.05, R * 0.8), (0.34 + 0.04, 0.05, R * 0.8), R * 0.8, 16), "tire"))
        parts.append((*box((0.14, 0.0, 0.22), (0.2, 0.06, 0.05)), "metal"))
    return parts


SUBTYPES = [
    ("sport", dict(wheel_r=0.15, wheelbase=0.74, rake=0.14, head_z=0.44, bar_rise=-0.04, bar_w=0.28, seat_z=0.44, fairing=0.1,
                   fairing_z=0.1, tank=0.32, seat_len=0.28, tail=0.08, exhaust_up=0.2, rear_w=1.5, body_w=0.16)),
    ("cruiser", dict(wheel_r=0.18, rear_r=0.16, wheelbase=0.96, rake=0.24, head_z=0.46, bar_rise=0.16, bar_w=0.5, bar_back=0.1,
                     seat_z=0.32, tank_h=0.1, tank=0.26, seat_len=0.3, exhaust_up=0.0, body_z=0.1, tyre_w=0.08, rear_w=1.7,
                     body_w=0.18)),
    ("dirt", dict(wheel_r=0.22, rear_r=0.2, wheelbase=0.72, rake=0.13, head_z=0.64, bar_rise=0.08, bar_w=0.44, seat_z=0.62,
                  tank=0.22, seat_len=0.42, tyre_w=0.06, rear_w=1.1, high_fenders=True, exhaust_up=0.25, body_z=0.22,
                  body_w=0.12)),
    ("scooter", dict(wheel_r=0.1, wheelbase=0.6, rake=0.08, head_z=0.54, bar_rise=0.06, bar_w=0.34, seat_z=0.42, tank=0.3,
                     seat_len=0.34, tyre_w=0.08, rear_w=1.0, floor=True, floor_z=0.2, body_w=0.18)),
    ("touring", dict(wheel_r=0.18, wheelbase=0.9, rake=0.14, head_z=0.55, bar_rise=0.05, bar_w=0.42, seat_z=0.5, fairing=0.16,
                     tank=0.3, seat_len=0.34, cases=True, rear_w=1.3, body_w=0.28, fairing_w=0.3, fairing_low=-0.04)),
    ("naked", dict(wheel_r=0.16, wheelbase=0.6, rake=0.1, head_z=0.55, bar_rise=0.12, bar_w=0.38, seat_z=0.52, tank=0.3,
                   seat_len=0.24, exhaust_up=0.1, rear_w=1.3, tank_h=0.16, body_z=0.16, body_w=0.15)),
    ("sidecar", dict(wheel_r=0.16, wheelbase=0.74, rake=0.15, head_z=0.5, bar_rise=0.07, bar_w=0.4, seat_z=0.44, tank=0.3,
                     seat_len=0.3, sidecar=True)),
]
