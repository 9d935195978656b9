"""Rasterizer benchmark (``ntdm bench-raster``): backends × icosphere sizes × image size × K × batch,
forward and forward+backward, median time and peak memory.

Also provides :func:`icosphere` (the shared template when ``ntdm_cli.geometry`` exists) and
:func:`sphere_screen_verts` (a sphere of a given pixel radius in front of a PASCAL3D+ camera), used by
the benchmarks and tests.
"""

from __future__ import annotations

import torch


def icosphere(subdivisions: int = 4, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere: (verts (V, 3), faces (F, 3) int64), F = 20·4^subdivisions, faces counter-clockwise
    seen from outside. Uses ``ntdm_cli.geometry.make_template`` when that module exists."""
    try:  # the geometry package owns the template (same topology)
        from ntdm_cli.geometry.template import make_template  # type: ignore

        t = make_template(subdivisions)
        return torch.as_tensor(t.verts, dtype=dtype), torch.as_tensor(t.faces, dtype=torch.int64)
    except ImportError:
        pass
    p = (1 + 5 ** 0.5) / 2
    verts = [[-1, p, 0], [1, p, 0], [-1, -p, 0], [1, -p, 0], [0, -1, p], [0, 1, p], [0, -1, -p], [0, 1, -p],
             [p, 0, -1], [p, 0, 1], [-p, 0, -1], [-p, 0, 1]]
    faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
             [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11],
             [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [list(map(float, v)) for v in verts]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                verts.append([(verts[a][i] + verts[b][i]) / 2 for i in range(3)])
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = new
    v = torch.tensor(verts, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)
    f = torch.tensor(faces, dtype=torch.int64)
    # orient every face counter-clockwise seen from outside
    tri = v[f]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (normal * tri.mean(1)).sum(1) < 0
    f[flip] = f[flip][:, [0, 2, 1]]
    return v.to(dtype), f


def sphere_screen_verts(batch: int, subdivisions: int, image_size: tuple[int, int], coverage: float = 0.25,
                        distance: float = 5.0, dtype=torch.float32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A unit-radius icosphere scaled to cover about ``coverage`` of an (H, W) image, seen by ``batch``
    PASCAL3D+ cameras on a pose grid (azimuth × elevation × theta, like the inference's initial
    hypotheses) at ``distance``; principal point at the image centre, slightly jittered.
    Returns (screen verts (batch, V, 3), faces (F, 3))."""
    import math

    from ntdm_cli.render.camera import Viewpoint, project

    H, W = image_size
    verts, faces = icosphere(subdivisions, dtype=torch.float64)
    focal_px = 3000.0
    R = math.sqrt(coverage * H * W / math.pi)  # silhouette radius, pixels
    radius = R * distance / math.sqrt(focal_px ** 2 + R ** 2)
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(batch, dtype=torch.float64)
    vp = Viewpoint.create(
        azimuth=(i % 12) * (2 * math.pi / 12), elevation=((i // 12) % 4) * 0.3 - 0.3, theta=((i // 48) % 3 - 1) * 0.3,
        distance=distance, px=W / 2 + torch.randn(batch, generator=g, dtype=torch.float64),
        py=H / 2 + torch.randn(batch, generator=g, dtype=torch.float64), dtype=torch.float64)
    return project(verts * radius, vp).to(dtype), faces
