"""Image -> surface transform (NTDM appendix A.1): image features onto the mesh's texture space.

Every 2×2 block of on-object pixels is a quadrilateral in texture space (its corners are the
pixels' UVs). Each texel centre inside it receives the bilinear-inverse-weighted sum of the four
pixel features (eq. 11); texels covered by several quads average them, the weight sum is kept, and
texels with weight > 0 are visible. Quads spanning more than ``seam_threshold`` of the texture in u
or v (seams) are skipped.

Texel convention: ``surface[n, :, y, x]`` sits at ``u = (x + 0.5) / Q``, ``v = (y + 0.5) / Q``, i.e. the
layout that ``torch.nn.functional.grid_sample(surface, 2 * uv - 1, align_corners=False)`` reads back.
"""

from __future__ import annotations

import torch

from ntdm_cli.ops import extension

_CORNERS = ((0, 0), (0, 1), (1, 1), (1, 0))  # (di, dj) of quad corners a, b, c, d


def _check(features: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, texture_size: int,
           seam_threshold: float) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        raise ValueError(f"features must be a (N, C, H, W) tensor, got {_shape(features)}")
    if not features.is_floating_point() or features.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"features must be float32 or float64, got {features.dtype}")
    N, _, H, W = features.shape
    if not isinstance(uv, torch.Tensor) or tuple(uv.shape) != (N, H, W, 2):
        raise ValueError(f"uv must have shape (N, H, W, 2) = {(N, H, W, 2)}, got {_shape(uv)}")
    if uv.dtype != features.dtype:
        raise TypeError(f"uv has dtype {uv.dtype} but features have {features.dtype}")
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (N, H, W):
        raise ValueError(f"mask must have shape (N, H, W) = {(N, H, W)}, got {_shape(mask)}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    for name, t in (("uv", uv), ("mask", mask)):
        if t.device != features.device:
            raise ValueError(f"{name} is on {t.device} but features are on {features.device}")
    if int(texture_size) != texture_size or texture_size <= 0:
        raise ValueError(f"texture_size must be a positive integer, got {texture_size}")
    if not seam_threshold > 0:
        raise ValueError(f"seam_threshold must be positive, got {seam_threshold}")


def _shape(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


# ----------------------------------------------------------------------------------------------
# pure-torch twin (the oracle and the fallback)


def _solve(px, py, ax, ay, bx, by, cx, cy, dx, dy):
    """Vectorised twin of ``ntdm::inverse_bilinear`` (cuda/common.h), the same operations in the
    same order so that inclusion decisions agree bit for bit (the differentiable pass re-solves and
    picks the same root). Returns (s, t, ok, use_first_root)."""
    ex, ey = bx - ax, by - ay
    fx, fy = dx - ax, dy - ay
    gx, gy = ((ax - bx) + cx) - dx, ((ay - by) + cy) - dy
    hx, hy = px - ax, py - ay
    k2 = gx * fy - gy * fx
    k1 = (ex * fy - ey * fx) + (hx * gy - hy * gx)
    k0 = hx * ey - hy * ex
    disc = k1 * k1 - 4 * k0 * k2
    pos = disc > 0
    sq = torch.where(pos, torch.sqrt(torch.where(pos, disc, torch.ones_like(disc))), torch.zeros_like(disc))
    q = -0.5 * (k1 + torch.where(k1 >= 0, sq, -sq))
    one = torch.ones_like(q)
    results = []
    for r in range(2):
        if r == 0:
            den_ok = q != 0
            t = k0 / torch.where(den_ok, q, one)
        else:
            den_ok = k2 != 0
            t = q / torch.where(den_ok, k2, one)
        ok = (disc >= 0) & den_ok & (t >= 0) & (t <= 1)
        mx, my = ex + gx * t, ey + gy * t
        mm = mx * mx + my * my
        ok = ok & (mm > 0)
        rx, ry = hx - fx * t, hy - fy * t
        s = (rx * mx + ry * my) / torch.where(mm > 0, mm, one)
        ok = ok & (s >= 0) & (s <= 1)
        scale = (mm + fx * fx) + fy * fy
        jtx, jty = fx + gx * s, fy + gy * s
        det = mx * jty - jtx * my
        ok = ok & (det.abs() > 1e-9 * scale)
        results.append((s, t, ok))
    (s0, t0, ok0), (s1, t1, ok1) = results
    use0 = ok0
    s = torch.where(use0, s0, s1)
    t = torch.where(use0, t0, t1)
    return s, t, ok0 | ok1, use0


def image_to_surface_torch(features: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor,
                           texture_size: int, seam_threshold: float = 0.2,
                           max_candidates: int = 1 << 22):
    """Pure-torch twin of :func:`image_to_surface` (same signature and results; autograd backward).

    Args:
        features: (N, C, H, W) float32/float64 image features.
        uv: (N, H, W, 2) texture coordinates in [0, 1] (u → texel column, v → texel row).
        mask: (N, H, W) bool, True on the object.
        texture_size: Q, the texture's side in texels.
        seam_threshold: quads wider than this fraction of the texture in u or v are skipped.
        max_candidates: texel candidates tested per chunk (memory bound of the search pass).

    Returns:
        surface (N, C, Q, Q), weight (N, Q, Q) (sum of quad weights per texel) and
        visible (N, Q, Q) bool (= weight > 0).
    """
    _check(features, uv, mask, texture_size, seam_threshold)
    N, C, H, W = features.shape
    Q = int(texture_size)
    accum = features.new_zeros(N * Q * Q, C)
    weight = features.new_zeros(N * Q * Q)
    if N > 0 and H > 1 and W > 1 and C > 0:
        entries = _search(uv.detach(), mask, Q, float(seam_threshold), max_candidates)
        if entries is not None:
            n, i, j, x, y = entries
            w = _corner_weights(uv, entries, Q)
            feat = features.permute(0, 2, 3, 1)
            contrib = w[0][:, None] * feat[n, i, j]
            for k in range(1, 4):
                di, dj = _CORNERS[k]
                contrib = contrib + w[k][:, None] * feat[n, i + di, j + dj]
            texel = (n * Q + y) * Q + x
            accum = accum.index_add(0, texel, contrib)
            weight = weight.index_add(0, texel, ((w[0] + w[1]) + w[2]) + w[3]).detach()
    surface = accum / torch.where(weight > 0, weight, torch.ones_like(weight))[:, None]
    surface = surface.view(N, Q, Q, C).permute(0, 3, 1, 2)
    weight = weight.view(N, Q, Q)
    return surface, weight, weight > 0


def _corner_weights(uv: torch.Tensor, entries, Q: int) -> list[torch.Tensor]:
    """Bilinear-inverse weights (4 × (K,)) of the quad corners a, b, c, d for the K (quad, texel)
    pairs ``entries`` of :func:`_search` (differentiable in ``uv``; they sum to 1 per pair)."""
    n, i, j, x, y = entries
    P = torch.stack([uv[n, i + di, j + dj] for di, dj in _CORNERS], dim=1) * Q - 0.5
    s, t, _, _ = _solve(x.to(uv.dtype), y.to(uv.dtype), *[P[:, k, c] for k in range(4) for c in range(2)])
    return [(1 - s) * (1 - t), s * (1 - t), s * t, (1 - s) * t]


@torch.no_grad()
def image_to_surface_weights(uv: torch.Tensor, mask: torch.Tensor, texture_size: int, seam_threshold: float = 0.2,
                             max_candidates: int = 1 << 22):
    """The image -> surface transform as a sparse matrix: image_to_surface is linear in the features,
    ``surface[n, :, texel] = Σ weight · features[n, :, pixel]`` over the entries with that (n, texel).

    For a fixed mesh and pose (training's annotations) the matrix is fixed, so it can be computed once
    and applied to every epoch's features. Not differentiable in ``uv``.

    Args: as :func:`image_to_surface` (``uv`` float32/float64 (N, H, W, 2), ``mask`` (N, H, W) bool).
    Returns:
        n, texel, pixel: (E,) int64 image index, flat texel index y·Q + x and flat pixel index i·W + j
            (the four corners of every covering quad; a pair may repeat);
        weight: (E,) the corner's weight divided by the texel's weight sum (so that summing gives the
            average of the covering quads, as image_to_surface does);
        total: (N, Q, Q) the weight sum per texel (image_to_surface's ``weight``; visible = total > 0).
    """
    _check(uv.new_zeros(uv.shape[0], 1, *uv.shape[1:3]), uv, mask, texture_size, seam_threshold)
    N, H, W = mask.shape
    Q = int(texture_size)
    total = uv.new_zeros(N * Q * Q)
    empty = torch.zeros(0, dtype=torch.long, device=uv.device)
    entries = _search(uv, mask, Q, float(seam_threshold), max_candidates) if N > 0 and H > 1 and W > 1 else None
    if entries is None:
        return empty, empty, empty, uv.new_zeros(0), total.view(N, Q, Q)
    n, i, j, x, y = entries
    w = _corner_weights(uv, entries, Q)
    texel = (n * Q + y) * Q + x
    total.index_add_(0, texel, ((w[0] + w[1]) + w[2]) + w[3])
    pixels = [(i + di) * W + (j + dj) for di, dj in _CORNERS]
    scale = total.index_select(0, texel)
    return (n.repeat(4), (y * Q + x).repeat(4), torch.cat(pixels), torch.cat([wk / scale for wk in w]),
            total.view(N, Q, Q))


def _search(uv: torch.Tensor, mask: torch.Tensor, Q: int, seam: float, max_candidates: int):
    """No-grad pass: every (quad, texel) pair whose texel centre lies inside the quad.

    Returns (n, i, j, x, y) int64 tensors of the K pairs, or None when K = 0."""
    u, v = uv[..., 0], uv[..., 1]
    cu = [u[:, di:di + u.shape[1] - 1, dj:dj + u.shape[2] - 1] for di, dj in _CORNERS]
    cv = [v[:, di:di + v.shape[1] - 1, dj:dj + v.shape[2] - 1] for di, dj in _CORNERS]
    cm = [mask[:, di:di + mask.shape[1] - 1, dj:dj + mask.shape[2] - 1] for di, dj in _CORNERS]
    valid = cm[0] & cm[1] & cm[2] & cm[3]
    umin, umax = torch.stack(cu).amin(0), torch.stack(cu).amax(0)
    vmin, vmax = torch.stack(cv).amin(0), torch.stack(cv).amax(0)
    valid &= ((umax - umin) <= seam) & ((vmax - vmin) <= seam)
    xl = torch.ceil(umin * Q - 0.5).clamp(min=0)
    xh = torch.floor(umax * Q - 0.5).clamp(max=Q - 1)
    yl = torch.ceil(vmin * Q - 0.5).clamp(min=0)
    yh = torch.floor(vmax * Q - 0.5).clamp(max=Q - 1)
    valid &= (xl <= xh) & (yl <= yh)
    idx = valid.nonzero()
    if idx.shape[0] == 0:
        return None
    n, i, j = idx.unbind(1)
    x0, x1 = xl[n, i, j].long(), xh[n, i, j].long()
    y0, y1 = yl[n, i, j].long(), yh[n, i, j].long()
    P = torch.stack([uv[n, i + di, j + dj] for di, dj in _CORNERS], dim=1) * Q - 0.5  # (M, 4, 2)
    bw = int((x1 - x0).max()) + 1
    bh = int((y1 - y0).max()) + 1
    oy, ox = torch.meshgrid(torch.arange(bh, device=uv.device), torch.arange(bw, device=uv.device), indexing="ij")
    ox, oy = ox.reshape(-1), oy.reshape(-1)
    chunk = max(1, max_candidates // (bw * bh))
    found = []
    for a in range(0, idx.shape[0], chunk):
        sl = slice(a, a + chunk)
        x = x0[sl, None] + ox
        y = y0[sl, None] + oy
        inb = (x <= x1[sl, None]) & (y <= y1[sl, None])
        Pc = P[sl]
        args = [Pc[:, k, c, None].expand_as(x) for k in range(4) for c in range(2)]
        _, _, ok, _ = _solve(x.to(uv.dtype), y.to(uv.dtype), *args)
        ok &= inb
        q_idx, c_idx = ok.nonzero().unbind(1)
        found.append((q_idx + a, x[q_idx, c_idx], y[q_idx, c_idx]))
    qi = torch.cat([f[0] for f in found])
    if qi.numel() == 0:
        return None
    x = torch.cat([f[1] for f in found])
    y = torch.cat([f[2] for f in found])
    return n[qi], i[qi], j[qi], x, y


# ----------------------------------------------------------------------------------------------
# compiled op


class _ImageToSurface(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, uv, mask, Q: int, seam: float):  # type: ignore[override]
        ext = extension.load()
        feat = features.permute(0, 2, 3, 1).contiguous()
        uv_c = uv.contiguous()
        mask_u8 = mask.contiguous().to(torch.uint8)
        accum, weight = ext.image_to_surface_forward(feat, uv_c, mask_u8, Q, seam)
        visible = weight > 0
        accum.div_(torch.where(visible, weight, torch.ones_like(weight)).unsqueeze(-1))
        ctx.save_for_backward(feat, uv_c, mask_u8, weight)
        ctx.Q, ctx.seam = Q, seam
        ctx.mark_non_differentiable(weight, visible)
        return accum.permute(0, 3, 1, 2), weight, visible

    @staticmethod
    def backward(ctx, grad_surface, _grad_weight, _grad_visible):  # type: ignore[override]
        feat, uv_c, mask_u8, weight = ctx.saved_tensors
        if grad_surface is None or not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
            return None, None, None, None, None
        ext = extension.load()
        g = grad_surface.permute(0, 2, 3, 1)
        scale = torch.where(weight > 0, weight, torch.ones_like(weight)).unsqueeze(-1)
        g = g.contiguous().div_(scale) if not g.is_contiguous() else g / scale
        grad_feat, grad_uv = ext.image_to_surface_backward(feat, uv_c, mask_u8, g, ctx.Q, ctx.seam)
        return (
            grad_feat.permute(0, 3, 1, 2) if ctx.needs_input_grad[0] else None,
            grad_uv if ctx.needs_input_grad[1] else None,
            None,
            None,
            None,
        )


def image_to_surface(features: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, texture_size: int,
                     seam_threshold: float = 0.2, backend: str = "auto"):
    """Transform image features onto the surface (texture) of a mesh; differentiable in
    ``features`` and ``uv`` (paper eqs. 12-14).

    Args:
        features: (N, C, H, W) float32/float64 image features (e.g. backbone output, stride 8).
        uv: (N, H, W, 2) per-pixel texture coordinates in [0, 1] from rasterising the mesh
            (u → texel column, v → texel row; texel x centred at (x + 0.5) / Q).
        mask: (N, H, W) bool, True where the pixel is on the object (valid uv).
        texture_size: Q, side of the square texture in texels.
        seam_threshold: quads spanning more than this fraction of the texture in u or v are skipped.
        backend: ``auto`` (compiled op when built, else the twin), ``native`` or ``torch``.

    Returns:
        surface: (N, C, Q, Q) average of the bilinear-inverse-weighted features of the quads
            covering each texel; 0 where none does. A channel-last tensor viewed as NCHW.
        weight: (N, Q, Q) sum of quad weights per texel (non-differentiable).
        visible: (N, Q, Q) bool, weight > 0.
    """
    _check(features, uv, mask, texture_size, seam_threshold)
    if backend not in ("auto", "native", "torch"):
        raise ValueError(f"backend must be auto, native or torch, got {backend!r}")
    use_native = False
    if backend != "torch":
        ext = extension.load()
        supported = ext is not None and (features.device.type == "cpu" or
                                         (features.is_cuda and getattr(ext, "with_cuda", False)))
        if backend == "native" and not supported:
            raise RuntimeError(f"the compiled image_to_surface op is not available for {features.device}; "
                               + extension.BUILD_HINT)
        use_native = supported
    if not use_native:
        return image_to_surface_torch(features, uv, mask, texture_size, seam_threshold)
    return _ImageToSurface.apply(features, uv, mask, int(texture_size), float(seam_threshold))
