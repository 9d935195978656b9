"""``rasterize()``: which faces cover each pixel, with differentiable barycentrics, depth and distances.

Screen convention (see :mod:`ntdm_cli.render.camera`): vertices are ``(pixel x right, pixel y down,
depth > 0 in front)``; pixel (row r, col c) has its centre at ``(c + 0.5, r + 0.5)``. All N meshes of a
batch share one ``faces (F, 3)`` tensor.

The discrete part (the K nearest faces per pixel, ``pix_to_face``) comes from a backend:

* ``native``: the compiled kernels of ``cuda/rasterize`` (CPU: faces binned by the rows of their
  screen bounding box, only covered pixels visited; CUDA: per 16×16 tile face lists);
* ``torch``: a plain vectorised reference (every face at every pixel, chunked) for tests and small
  inputs;
* ``pytorch3d``: PyTorch3D's ``rasterize_meshes`` when it imports (converted to and from its NDC).

Barycentrics, depth and signed distances are then recomputed in torch from ``pix_to_face`` and the
vertices (:func:`fragments_from_pix_to_face`), so autograd reaches the vertices whatever the backend.
Both the kernel and :func:`_face_pixel_terms` use the same arithmetic, operation for operation, so the
native and torch backends take the same decisions (ties in depth aside).

Semantics follow PyTorch3D's ``Fragments``: faces sorted nearest first (ties: lower face index), -1
where empty; ``zbuf`` the interpolated depth, ``bary_coords`` (perspective-correct when asked),
``dists`` the *signed squared* distance in pixels² from the pixel centre to the face's nearest edge,
negative inside; empty entries hold -1. Faces with a vertex at depth <= 0, degenerate faces (|area| <=
1e-10 px²) and, with ``cull_backfaces``, back faces are ignored. Front faces are those whose vertices
run counter-clockwise seen from the camera in a right-handed world (outward normals of a closed mesh
with counter-clockwise faces): in pixel coordinates (y down) their signed area is negative.
Unlike PyTorch3D, ``blur_radius`` is a distance in pixels (PyTorch3D's is a squared NDC distance).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ntdm_cli.ops import extension

BACKENDS = ("auto", "native", "torch", "pytorch3d")
_AREA_EPS = 1e-10
_TORCH_CHUNK_ELEMS = 1 << 22  # face x pixel pairs per chunk of the torch reference


class Fragments(NamedTuple):
    """Per-pixel rasterization output (PyTorch3D's layout).

    pix_to_face: (N, H, W, K) int64, face index into ``faces`` (not offset by batch), -1 where empty.
    zbuf: (N, H, W, K) depth (world units), -1 where empty.
    bary_coords: (N, H, W, K, 3), -1 where empty.
    dists: (N, H, W, K) signed squared distance to the face's nearest edge, pixels², negative inside,
    -1 where empty.
    """

    pix_to_face: torch.Tensor
    zbuf: torch.Tensor
    bary_coords: torch.Tensor
    dists: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(N, H, W) bool: a face covers the pixel."""
        return self.pix_to_face[..., 0] >= 0


_PYTORCH3D: object | None = None
_PYTORCH3D_TRIED = False


def pytorch3d_available() -> bool:
    global _PYTORCH3D, _PYTORCH3D_TRIED
    if not _PYTORCH3D_TRIED:
        _PYTORCH3D_TRIED = True
        try:
            from pytorch3d.renderer.mesh import rasterize_meshes  # type: ignore

            _PYTORCH3D = rasterize_meshes
        except Exception:  # ImportError or a broken build
            _PYTORCH3D = None
    return _PYTORCH3D is not None


def native_available(device: torch.device | str = "cpu") -> bool:
    ext = extension.load()
    if ext is None or not hasattr(ext, "rasterize_pix_to_face"):
        return False
    return torch.device(device).type == "cpu" or extension.has_cuda_kernels()


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The backend that ``backend`` means on ``device`` (``auto``: native, else pytorch3d, else torch)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        if native_available(device):
            return "native"
        return "pytorch3d" if pytorch3d_available() else "torch"
    if backend == "native" and not native_available(device):
        raise RuntimeError(f"the native rasterizer is not available on {device}: {extension.BUILD_HINT}")
    if backend == "pytorch3d" and not pytorch3d_available():
        raise RuntimeError("backend 'pytorch3d' requested but pytorch3d cannot be imported")
    return backend


def _check(verts: torch.Tensor, faces: torch.Tensor, image_size, faces_per_pixel: int,
           blur_radius: float) -> tuple[int, int]:
    if not isinstance(verts, torch.Tensor) or verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be a (N, V, 3) tensor of screen (x, y, depth), got "
                         f"{tuple(verts.shape) if isinstance(verts, torch.Tensor) else type(verts).__name__}")
    if verts.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"verts must be float32 or float64, got {verts.dtype}")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be a (F, 3) tensor, got "
                         f"{tuple(faces.shape) if isinstance(faces, torch.Tensor) else type(faces).__name__}")
    if faces.dtype != torch.int64:
        raise TypeError(f"faces must be int64, got {faces.dtype}")
    if faces.device != verts.device:
        raise ValueError(f"faces are on {faces.device} but verts are on {verts.device}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[1]):
        raise ValueError(f"faces index vertices {int(faces.min())}..{int(faces.max())} but verts has "
                         f"{verts.shape[1]} vertices")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    H, W = (int(s) for s in image_size)
    if H <= 0 or W <= 0:
        raise ValueError(f"image_size must be positive, got {(H, W)}")
    if int(faces_per_pixel) != faces_per_pixel or faces_per_pixel < 1:
        raise ValueError(f"faces_per_pixel must be a positive integer, got {faces_per_pixel}")
    if not blur_radius >= 0:
        raise ValueError(f"blur_radius must be >= 0 (pixels), got {blur_radius}")
    return H, W


def rasterize(
    verts: torch.Tensor,
    faces: torch.Tensor,
    image_size: tuple[int, int] | int,
    faces_per_pixel: int = 1,
    blur_radius: float = 0.0,
    perspective_correct: bool = True,
    cull_backfaces: bool = False,
    clip_barycentric_coords: bool | None = None,
    backend: str = "auto",
) -> Fragments:
    """Rasterize N meshes that share one face tensor.

    verts: (N, V, 3) float32/float64 screen coordinates (pixel x, pixel y, depth), e.g. from
        :func:`ntdm_cli.render.camera.project`. faces: (F, 3) int64. image_size: (H, W) pixels.
    faces_per_pixel: K nearest faces kept per pixel. blur_radius: pixels; faces whose edge is within
        this distance of a pixel centre also count (with positive ``dists``). The K nearest are kept
        whether or not they cover the pixel, so soft blending needs K large enough (e.g. 8 for a
        radius of one pixel on a finely tessellated mesh) for the covering face to stay in the list.
    perspective_correct: barycentrics (and depth) interpolated in 3D rather than in screen space.
    cull_backfaces: ignore faces seen from behind (see the module docstring).
    clip_barycentric_coords: clip barycentrics to the face (default: when blur_radius > 0).
    backend: auto | native | torch | pytorch3d.

    Returns :class:`Fragments`; ``zbuf``, ``bary_coords`` and ``dists`` are differentiable w.r.t. verts.
    """
    H, W = _check(verts, faces, image_size, faces_per_pixel, blur_radius)
    K = int(faces_per_pixel)
    clip = bool(blur_radius > 0) if clip_barycentric_coords is None else bool(clip_barycentric_coords)
    p2f = pix_to_face(verts, faces, (H, W), K, blur_radius, perspective_correct, cull_backfaces, clip, backend)
    return fragments_from_pix_to_face(verts, faces, p2f, perspective_correct, clip)


def pix_to_face(verts: torch.Tensor, faces: torch.Tensor, image_size: tuple[int, int], faces_per_pixel: int = 1,
                blur_radius: float = 0.0, perspective_correct: bool = True, cull_backfaces: bool = False,
                clip_barycentric_coords: bool = False, backend: str = "auto") -> torch.Tensor:
    """Only the discrete part of :func:`rasterize`: (N, H, W, K) int64 face indices, -1 where empty."""
    H, W = _check(verts, faces, image_size, faces_per_pixel, blur_radius)
    backend = resolve_backend(backend, verts.device)
    args = (verts.detach(), faces, H, W, int(faces_per_pixel), float(blur_radius), bool(perspective_correct),
            bool(clip_barycentric_coords), bool(cull_backfaces))
    if backend == "native":
        ext = extension.load()
        return ext.rasterize_pix_to_face(args[0].contiguous(), faces.contiguous(), *args[2:])
    if backend == "pytorch3d":
        return _pix_to_face_pytorch3d(*args)
    return _pix_to_face_torch(*args)


# ----------------------------------------------------------------------------------------------
# arithmetic shared by the reference backend and the differentiable recomputation; the same
# operations in the same order as cuda/rasterize/rasterize.h


def _face_area(x0, y0, x1, y1, x2, y2):
    return (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)


def _segment_dist2(ax, ay, bx, by, px, py):
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    ok = len2 > 0
    t = torch.where(ok, ((px - ax) * dx + (py - ay) * dy) / torch.where(ok, len2, torch.ones_like(len2)),
                    torch.zeros_like(len2))
    t = t.clamp(0, 1)
    qx, qy = (ax + t * dx) - px, (ay + t * dy) - py
    return qx * qx + qy * qy


def _face_pixel_terms(x0, y0, z0, x1, y1, z1, x2, y2, z2, area, px, py, perspective: bool, clip: bool,
                      need_dist: bool):
    """Screen barycentrics (inside test), output barycentrics, depth and squared edge distance of
    faces at pixel centres (all broadcast together). Returns (inside, (b0, b1, b2), z, dist2 or None)."""
    e0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    e1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    e2 = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
    l0, l1, l2 = e0 / area, e1 / area, e2 / area
    inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
    d2 = None
    if need_dist:
        d2 = torch.minimum(torch.minimum(_segment_dist2(x0, y0, x1, y1, px, py), _segment_dist2(x1, y1, x2, y2, px, py)),
                           _segment_dist2(x2, y2, x0, y0, px, py))
    if clip:
        l0, l1, l2 = l0.clamp_min(0), l1.clamp_min(0), l2.clamp_min(0)
        s = (l0 + l1) + l2
        l0, l1, l2 = l0 / s, l1 / s, l2 / s
    if perspective:
        w0, w1, w2 = l0 / z0, l1 / z1, l2 / z2
        den = (w0 + w1) + w2
        b0, b1, b2 = w0 / den, w1 / den, w2 / den
    else:
        b0, b1, b2 = l0, l1, l2
    z = (b0 * z0 + b1 * z1) + b2 * z2
    return inside, (b0, b1, b2), z, d2


def _face_valid(z0, z1, z2, area, cull: bool):
    finite_z = (z0 < math.inf) & (z1 < math.inf) & (z2 < math.inf)
    ok = (z0 > 0) & (z1 > 0) & (z2 > 0) & finite_z & (area.abs() > _AREA_EPS) & (area.abs() < math.inf)
    if cull:
        ok = ok & ~(area > 0)
    return ok


def _pix_to_face_torch(verts, faces, H, W, K, blur, perspective, clip, cull):
    """Reference: every face at every pixel, in chunks of pixels; K nearest by repeated argmin
    (the first minimum is the lowest face index, the kernel's tie rule)."""
    N, F = verts.shape[0], faces.shape[0]
    out = torch.full((N, H * W, K), -1, dtype=torch.int64, device=verts.device)
    if F == 0 or N == 0:
        return out.reshape(N, H, W, K)
    blur2 = torch.tensor(blur * blur, dtype=verts.dtype)
    ys, xs = torch.meshgrid(torch.arange(H, device=verts.device), torch.arange(W, device=verts.device), indexing="ij")
    pxs = xs.reshape(-1).to(verts.dtype) + 0.5
    pys = ys.reshape(-1).to(verts.dtype) + 0.5
    chunk = max(1, _TORCH_CHUNK_ELEMS // F)
    for n in range(N):
        tri = verts[n][faces]  # (F, 3, 3)
        x0, y0, z0 = (tri[:, 0, i, None] for i in range(3))
        x1, y1, z1 = (tri[:, 1, i, None] for i in range(3))
        x2, y2, z2 = (tri[:, 2, i, None] for i in range(3))
        area = _face_area(x0, y0, x1, y1, x2, y2)
        valid = _face_valid(z0, z1, z2, area, cull)
        for p0 in range(0, H * W, chunk):
            px, py = pxs[None, p0:p0 + chunk], pys[None, p0:p0 + chunk]
            inside, _, z, d2 = _face_pixel_terms(x0, y0, z0, x1, y1, z1, x2, y2, z2, area, px, py,
                                                 perspective, clip, blur > 0)
            hit = inside if blur <= 0 else inside | (d2 < blur2)
            hit = hit & valid & (z > 0) & (z < math.inf)
            zz = torch.where(hit, z, torch.full_like(z, math.inf))
            for k in range(K):
                best = zz.argmin(0)
                zbest = zz.gather(0, best[None])[0]
                found = zbest < math.inf
                out[n, p0:p0 + chunk, k] = torch.where(found, best, torch.full_like(best, -1))
                zz.scatter_(0, best[None], math.inf)
    return out.reshape(N, H, W, K)


def _pix_to_face_pytorch3d(verts, faces, H, W, K, blur, perspective, clip, cull):
    """PyTorch3D's rasterize_meshes on our screen vertices converted to its NDC (+x left, +y up, the
    shorter side spanning [-1, 1]): x_ndc = (W - 2x) / S, y_ndc = (H - 2y) / S, S = min(H, W)."""
    from pytorch3d.structures import Meshes  # type: ignore

    N, F = verts.shape[0], faces.shape[0]
    S = float(min(H, W))
    ndc = torch.stack([(W - 2 * verts[..., 0]) / S, (H - 2 * verts[..., 1]) / S, verts[..., 2]], -1).float()
    meshes = Meshes(verts=ndc, faces=faces[None].expand(N, F, 3))
    p2f, _, _, _ = _PYTORCH3D(  # type: ignore[misc]
        meshes, image_size=(H, W), blur_radius=(2 * blur / S) ** 2, faces_per_pixel=K,
        perspective_correct=perspective, clip_barycentric_coords=clip, cull_backfaces=cull)
    offset = (torch.arange(N, device=verts.device) * F).view(N, 1, 1, 1)
    return torch.where(p2f >= 0, p2f - offset, p2f)


# ----------------------------------------------------------------------------------------------
# differentiable recomputation


def fragments_from_pix_to_face(verts: torch.Tensor, faces: torch.Tensor, pix_to_face: torch.Tensor,
                               perspective_correct: bool = True, clip_barycentric_coords: bool = False) -> Fragments:
    """Barycentrics, depth and signed squared distances of the faces in ``pix_to_face`` (N, H, W, K),
    computed in torch from ``verts`` (N, V, 3) screen so that gradients reach the vertices. Only the
    covered entries are computed (empty ones are -1)."""
    N, H, W, K = pix_to_face.shape
    V = verts.shape[1]
    flat = pix_to_face.reshape(-1)
    idx = (flat >= 0).nonzero().squeeze(1)
    f = flat[idx]
    n = idx // (H * W * K)
    pix = (idx // K) % (H * W)
    dtype = verts.dtype
    px = (pix % W).to(dtype) + 0.5
    py = (pix // W).to(dtype) + 0.5
    # gather coordinate-major so that every term below is a contiguous (M,) vector
    vidx = (faces[f] + (n * V)[:, None]).t().reshape(-1)  # (3 * M,) vertex-major
    g = verts.reshape(N * V, 3).t().contiguous().index_select(1, vidx).view(3, 3, -1)  # (coord, vertex, M)
    (x0, x1, x2), (y0, y1, y2), (z0, z1, z2) = g[0], g[1], g[2]
    area = _face_area(x0, y0, x1, y1, x2, y2)
    inside, (b0, b1, b2), z, d2 = _face_pixel_terms(x0, y0, z0, x1, y1, z1, x2, y2, z2, area, px, py,
                                                    perspective_correct, clip_barycentric_coords, True)
    bary = torch.stack([b0, b1, b2], -1)
    dist = torch.where(inside, -d2, d2)
    total = N * H * W * K
    zbuf = verts.new_full((total,), -1.0).index_copy(0, idx, z).reshape(N, H, W, K)
    dists = verts.new_full((total,), -1.0).index_copy(0, idx, dist).reshape(N, H, W, K)
    bary = verts.new_full((total, 3), -1.0).index_copy(0, idx, bary)
    return Fragments(pix_to_face, zbuf, bary.reshape(N, H, W, K, 3), dists)


__all__ = [
    "BACKENDS",
    "Fragments",
    "fragments_from_pix_to_face",
    "native_available",
    "pix_to_face",
    "pytorch3d_available",
    "rasterize",
    "resolve_backend",
]
