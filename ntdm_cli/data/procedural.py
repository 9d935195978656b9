"""Procedural image content of the synthetic benchmark (numpy + PIL only, deterministic per Generator):
backgrounds, solid 3D textures, occluders and OOD weather transforms.

Families: backgrounds ``noise | gradient | clutter`` (training) and ``bricks | voronoi`` (unseen, OOD
context); textures ``plain | stripes | checker | noise`` (training) and ``dots | camo`` (unseen, OOD
texture); weather ``fog | snow | rain | noise | blur``. Images are float32 (H, W, 3) in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

BACKGROUNDS_TRAIN = ("noise", "gradient", "clutter")
BACKGROUNDS_OOD = ("bricks", "voronoi")
TEXTURES_TRAIN = ("plain", "stripes", "checker", "noise")
TEXTURES_OOD = ("dots", "camo")
WEATHER = ("fog", "snow", "rain", "noise", "blur")


def random_color(rng: np.random.Generator, sat=(0.2, 0.9), val=(0.25, 0.95), hue=(0.0, 1.0)) -> np.ndarray:
    """A random RGB colour (3,) from HSV ranges (hue in turns; a range past 1 wraps around)."""
    h = (hue[0] + rng.random() * (hue[1] - hue[0])) % 1.0
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32)


def _resize(a: np.ndarray, h: int, w: int, nearest: bool = False) -> np.ndarray:
    img = Image.fromarray(a.astype(np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC))


def value_noise(rng: np.random.Generator, h: int, w: int, cells: float = 6, octaves: int = 3) -> np.ndarray:
    """Smooth fractal noise (h, w) in [0, 1]: random grids upsampled bicubically, octaves halving."""
    out = np.zeros((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = max(2, int(round(cells * 2 ** o)))
        grid = rng.random((c + 1, c + 1)).astype(np.float32)
        out += amp * _resize(grid, h, w)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _mix(a: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    return (c0[None, None] * (1 - a[..., None]) + c1[None, None] * a[..., None]).astype(np.float32)


def _gradient(rng, h, w) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:
        ang = rng.uniform(0, 2 * math.pi)
        t = (xs * math.cos(ang) + ys * math.sin(ang))
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xs - cx, ys - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c0, c1, c2 = random_color(rng), random_color(rng), random_color(rng)
    img = np.where(t[..., None] < 0.5, _mix(t * 2, c0, c1), _mix(np.clip(t * 2 - 1, 0, 1), c1, c2))
    return img


def _noise_bg(rng, h, w) -> np.ndarray:
    n = value_noise(rng, h, w, cells=rng.uniform(3, 10), octaves=4)
    img = _mix(n, random_color(rng), random_color(rng))
    grain = value_noise(rng, h, w, cells=h / 6, octaves=1)
    return np.clip(img * (0.85 + 0.3 * grain[..., None]), 0, 1)


def _clutter(rng, h, w) -> np.ndarray:
    base = _gradient(rng, h, w) if rng.random() < 0.5 else _noise_bg(rng, h, w)
    img = Image.fromarray((base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(8, 25))):
        c = tuple(int(v * 255) for v in random_color(rng))
        x, y = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        r = rng.uniform(0.03, 0.2) * max(h, w)
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.ellipse([x - r, y - r * rng.uniform(0.4, 1), x + r, y + r * rng.uniform(0.4, 1)], fill=c)
        elif kind == 1:
            draw.rectangle([x - r, y - r * rng.uniform(0.2, 1), x + r * rng.uniform(0.2, 1), y + r], fill=c)
        elif kind == 2:
            pts = [(x + r * math.cos(a) * rng.uniform(0.5, 1), y + r * math.sin(a) * rng.uniform(0.5, 1))
                   for a in np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(3, 7))))]
            draw.polygon(pts, fill=c)
        else:
            draw.line([x, y, x + rng.uniform(-2, 2) * r, y + rng.uniform(-2, 2) * r], fill=c, width=int(rng.integers(2, 8)))
    return np.asarray(img).astype(np.float32) / 255


def _bricks(rng, h, w) -> np.ndarray:
    bh = int(rng.integers(max(6, h // 20), max(8, h // 8)))
    bw = int(bh * rng.uniform(1.8, 3.2))
    mortar = random_color(rng, sat=(0, 0.2), val=(0.6, 0.95))
    c0, c1 = random_color(rng), random_color(rng)
    rows = h // bh + 2
    cols = w // bw + 3
    jitter = rng.random((rows, cols)).astype(np.float32)
    ys, xs = np.mgrid[0:h, 0:w]
    r = ys // bh
    xo = xs + (r % 2) * (bw // 2)
    c = xo // bw
    t = jitter[r, np.minimum(c, cols - 1)]
    img = _mix(t, c0, c1)
    line = ((ys % bh) < max(1, bh // 6)) | ((xo % bw) < max(1, bh // 6))
    img[line] = mortar
    ang = rng.uniform(-0.3, 0.3)
    out = Image.fromarray((img * 255).astype(np.uint8)).rotate(math.degrees(ang), resample=Image.Resampling.BILINEAR,
                                                               expand=False, fillcolor=tuple(int(v * 255) for v in mortar))
    return np.asarray(out).astype(np.float32) / 255


def _voronoi(rng, h, w) -> np.ndarray:
    k = int(rng.integers(12, 40))
    seeds = rng.random((k, 2)) * np.array([h, w])
    cols = np.stack([random_color(rng) for _ in range(k)])
    s = 4  # compute at 1/4 resolution, upsample nearest
    ys, xs = np.mgrid[0:(h + s - 1) // s, 0:(w + s - 1) // s].astype(np.float32) * s
    d = (ys[..., None] - seeds[:, 0]) ** 2 + (xs[..., None] - seeds[:, 1]) ** 2
    idx = np.argmin(d, -1)
    d.sort(-1)
    edge = (np.sqrt(d[..., 1]) - np.sqrt(d[..., 0])) < 2.5
    small = cols[idx]
    small[edge] = 0.05
    img = np.repeat(np.repeat(small, s, 0), s, 1)[:h, :w]
    return img.astype(np.float32)


def background(rng: np.random.Generator, family: str, h: int, w: int) -> np.ndarray:
    """A background image (h, w, 3) float32 in [0, 1] of ``family``."""
    fn = {"noise": _noise_bg, "gradient": _gradient, "clutter": _clutter, "bricks": _bricks, "voronoi": _voronoi}[family]
    return fn(rng, h, w)


# --------------------------------------------------------------------------------------------- textures

ROLE_COLORS = {  # role -> (saturation range, value range[, hue range]) or a fixed-ish colour
    "tire": ((0.0, 0.15), (0.05, 0.18)),
    "glass": ((0.1, 0.4), (0.15, 0.4)),
    "metal": ((0.0, 0.12), (0.45, 0.85)),
    "light": ((0.0, 0.2), (0.85, 1.0)),
    "tail": ((0.7, 1.0), (0.6, 0.95), (0.96, 1.03)),  # red rear lamps: the back of a vehicle looks like one
    "screen": ((0.1, 0.5), (0.05, 0.3)),
    "sail": ((0.0, 0.15), (0.8, 1.0)),
}


def part_material(rng: np.random.Generator, role: str, families: tuple[str, ...]) -> dict:
    """Random material of a part: two colours, a pattern family and its parameters."""
    sat, val, *hue = ROLE_COLORS.get(role, ((0.2, 0.9), (0.25, 0.95)))
    c1 = random_color(rng, sat, val, *hue)
    c2 = random_color(rng) if role not in ("tire", "glass", "screen") else np.clip(c1 * rng.uniform(0.6, 1.4), 0, 1)
    fam = "plain" if role in ("tire", "light", "tail") else str(families[int(rng.integers(0, len(families)))])
    d = rng.normal(size=3)
    return {
        "family": fam, "c1": c1, "c2": c2.astype(np.float32), "dir": (d / np.linalg.norm(d)).astype(np.float32),
        "freq": float(rng.uniform(8, 30)), "phase": float(rng.uniform(0, 2 * math.pi)),
        "waves": rng.normal(size=(4, 3)).astype(np.float32) * float(rng.uniform(6, 16)),
        "wphase": rng.uniform(0, 2 * math.pi, 4).astype(np.float32),
    }


def _waves(p: np.ndarray, m: dict) -> np.ndarray:
    return np.sin(p @ m["waves"].T + m["wphase"]).mean(-1) * 0.5 + 0.5


def shade_pattern(points: np.ndarray, m: dict) -> np.ndarray:
    """Albedo (M, 3) of a material at object-frame points (M, 3) (a solid texture)."""
    fam = m["family"]
    if fam == "plain":
        t = np.zeros(len(points), dtype=np.float32)
    elif fam == "stripes":
        t = (np.sin(points @ m["dir"] * m["freq"] + m["phase"]) > 0).astype(np.float32)
    elif fam == "checker":
        q = np.floor(points * m["freq"] / 3).astype(np.int64)
        t = (q.sum(-1) % 2).astype(np.float32)
    elif fam == "noise":
        t = _waves(points, m)
    elif fam == "dots":
        f = m["freq"]
        q = points * f / 2
        t = (np.linalg.norm(q - np.round(q), axis=-1) < 0.3).astype(np.float32)
    elif fam == "camo":
        v = _waves(points, m) + 0.5 * _waves(points * 2.3, m)
        t = np.digitize(v, [0.55, 0.85]).astype(np.float32) / 2
    else:
        raise ValueError(f"unknown texture family {fam!r}")
    return (m["c1"][None] * (1 - t[:, None]) + m["c2"][None] * t[:, None]).astype(np.float32)


# -------------------------------------------------------------------------------------------- occluders


def _occluder_shape(rng, h: int, w: int, center: tuple[float, float], radius: float) -> np.ndarray:
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    x, y = center
    kind = rng.integers(0, 3)
    if kind == 0:
        a = rng.uniform(0.5, 1.0)
        draw.ellipse([x - radius, y - radius * a, x + radius, y + radius * a], fill=255)
    elif kind == 1:
        ang = rng.uniform(0, math.pi)
        ax, ay = radius * rng.uniform(0.4, 1.0), radius * rng.uniform(0.4, 1.0)
        c, s = math.cos(ang), math.sin(ang)
        pts = [(x + c * dx - s * dy, y + s * dx + c * dy) for dx, dy in ((-ax, -ay), (ax, -ay), (ax, ay), (-ax, ay))]
        draw.polygon(pts, fill=255)
    else:
        n = int(rng.integers(5, 9))
        angs = np.sort(rng.uniform(0, 2 * math.pi, n))
        pts = [(x + radius * rng.uniform(0.55, 1.0) * math.cos(a), y + radius * rng.uniform(0.55, 1.0) * math.sin(a)) for a in angs]
        draw.polygon(pts, fill=255)
    return np.asarray(img) > 127


def _occluder_texture(rng, h: int, w: int) -> np.ndarray:
    fam = rng.integers(0, 3)
    if fam == 0:
        return _noise_bg(rng, h, w)
    if fam == 1:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, math.pi)
        t = (np.sin((xs * math.cos(ang) + ys * math.sin(ang)) * rng.uniform(0.15, 0.6)) > 0).astype(np.float32)
        return _mix(t, random_color(rng), random_color(rng))
    return _gradient(rng, h, w)


def add_occluders(rng: np.random.Generator, image: np.ndarray, object_mask: np.ndarray, band: tuple[float, float],
                  max_occluders: int = 5) -> tuple[np.ndarray, np.ndarray, float, list]:
    """Paste textured occluders over ``image`` until the covered fraction of ``object_mask`` lies in
    ``band`` (lo, hi). Returns (image', occluder_mask (H, W) bool, ratio, occluder boxes [y0, y1, x0, x1, H, W]).
    Each occluder is centred on an object pixel; its size is bisected so the running coverage hits a
    target drawn uniformly inside the band."""
    h, w = object_mask.shape
    area = float(object_mask.sum())
    if area == 0:
        return image.copy(), np.zeros((h, w), bool), 0.0, []
    target = rng.uniform(band[0] + 0.02, band[1] - 0.02)
    occ = np.zeros((h, w), bool)
    boxes = []
    ys, xs = np.nonzero(object_mask)
    obj_size = math.sqrt(area)
    out = image.copy()
    for k in range(max_occluders):
        cur = float((occ & object_mask).sum()) / area
        if band[0] <= cur <= band[1] and cur >= target - 0.03:
            break
        j = int(rng.integers(0, len(ys)))
        center = (xs[j] + 0.5, ys[j] + 0.5)
        seed = int(rng.integers(0, 2**31))
        lo, hi = 0.05 * obj_size, 1.2 * obj_size
        best = None
        for _ in range(14):  # bisection on the occluder radius for the target coverage
            mid = (lo + hi) / 2
            shape = _occluder_shape(np.random.default_rng(seed), h, w, center, mid)
            cov = float(((occ | shape) & object_mask).sum()) / area
            best = (shape, cov)
            if abs(cov - target) < 0.01:
                break
            if cov < target:
                lo = mid
            else:
                hi = mid
        shape, cov = best
        if cov > band[1]:
            continue  # overshoot: try another occluder position
        tex = _occluder_texture(rng, h, w)
        out[shape] = tex[shape]
        occ |= shape
        r, c = np.nonzero(shape)
        if len(r):
            boxes.append([int(r.min()), int(r.max()) + 1, int(c.min()), int(c.max()) + 1, h, w])
    ratio = float((occ & object_mask).sum()) / area
    return out, occ, ratio, boxes


# ---------------------------------------------------------------------------------------------- weather


def apply_weather(rng: np.random.Generator, image: np.ndarray, kind: str) -> np.ndarray:
    """An OOD-CV-like weather/degradation of ``image`` (H, W, 3) float in [0, 1]."""
    from scipy import ndimage

    h, w = image.shape[:2]
    if kind == "fog":
        density = value_noise(rng, h, w, cells=3, octaves=2) * 0.25 + rng.uniform(0.35, 0.55)
        fog = np.array([0.85, 0.87, 0.9], dtype=np.float32) * rng.uniform(0.85, 1.0)
        return image * (1 - density[..., None]) + fog * density[..., None]
    if kind == "snow":
        out = image * 0.8 + 0.15
        n = int(h * w * rng.uniform(0.004, 0.012))
        layer = np.zeros((h, w), np.float32)
        layer[rng.integers(0, h, n), rng.integers(0, w, n)] = 1.0
        layer = ndimage.gaussian_filter(layer, rng.uniform(0.6, 1.2)) * 6
        return np.clip(out + np.clip(layer, 0, 1)[..., None], 0, 1)
    if kind == "rain":
        n = int(h * w * rng.uniform(0.002, 0.006))
        layer = np.zeros((h, w), np.float32)
        layer[rng.integers(0, h, n), rng.integers(0, w, n)] = 1.0
        length = int(rng.integers(8, 18))
        k = np.zeros((length, length), np.float32)
        ang = rng.uniform(-0.4, 0.4)
        for i in range(length):
            k[i, int(np.clip(length / 2 + (i - length / 2) * math.tan(ang), 0, length - 1))] = 1
        streaks = np.clip(ndimage.convolve(layer, k, mode="constant"), 0, 1) * 0.6
        out = image * 0.8 + 0.05
        return np.clip(out + streaks[..., None] * np.array([0.8, 0.85, 0.9], np.float32), 0, 1)
    if kind == "noise":
        return np.clip(image + rng.normal(0, rng.uniform(0.08, 0.16), image.shape).astype(np.float32), 0, 1)
    if kind == "blur":
        s = rng.uniform(1.8, 3.0)
        return ndimage.gaussian_filter(image, (s, s, 0))
    raise ValueError(f"unknown weather {kind!r}")
