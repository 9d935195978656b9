"""Feature rendering on fragments: UVs, texture sampling and per-vertex attributes of the nearest face.

Everything here reads the nearest face (K index 0) and works on the covered pixels only: the
barycentrics of the M covered pixels are gathered, combined with the face's three UVs / attributes and
scattered back, so no (N, H, W, K, C) (or (N, H, W, 3, D)) tensor is ever built. Background pixels get
zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ntdm_cli.render.rasterize import Fragments


def covered_pixels(fragments: Fragments) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The covered pixels of the nearest face: (idx (M,) flat index into N·H·W, face (M,) int64,
    bary (M, 3) differentiable)."""
    N, H, W, K = fragments.pix_to_face.shape
    p2f = fragments.pix_to_face[..., 0].reshape(-1)
    idx = (p2f >= 0).nonzero().squeeze(1)
    bary = fragments.bary_coords[..., 0, :].reshape(-1, 3).index_select(0, idx)
    return idx, p2f.index_select(0, idx), bary


def scatter_covered(idx: torch.Tensor, values: torch.Tensor, total: int) -> torch.Tensor:
    """Values (M, ...) of the covered pixels ``idx`` -> (total, ...) with zeros elsewhere."""
    return values.new_zeros((total,) + tuple(values.shape[1:])).index_copy(0, idx, values)


def uv_at(face: torch.Tensor, bary: torch.Tensor, verts_uvs: torch.Tensor, faces_uvs: torch.Tensor) -> torch.Tensor:
    """UV (M, 2) of covered pixels (face (M,), bary (M, 3) from :func:`covered_pixels`)."""
    tri_uv = verts_uvs.to(bary.dtype).index_select(0, faces_uvs.index_select(0, face).reshape(-1)).reshape(-1, 3, 2)
    return (bary[..., None] * tri_uv).sum(1)


def attributes_at(idx: torch.Tensor, face: torch.Tensor, bary: torch.Tensor, faces: torch.Tensor, attrs: torch.Tensor,
                  pixels_per_image: int) -> torch.Tensor:
    """Per-vertex attributes attrs (N, V, D) (or (1, V, D) shared) interpolated at covered pixels: (M, D).
    ``pixels_per_image`` = H·W tells which image each flat index ``idx`` belongs to."""
    V, D = attrs.shape[1], attrs.shape[2]
    vidx = faces.index_select(0, face)
    if attrs.shape[0] != 1:
        vidx = vidx + (idx // pixels_per_image * V)[:, None]
    tri = attrs.reshape(-1, D).index_select(0, vidx.reshape(-1)).reshape(-1, 3, D)
    return (bary.to(tri.dtype)[..., None] * tri).sum(1)


def interpolate_uv(fragments: Fragments, verts_uvs: torch.Tensor, faces_uvs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """UV coordinates of the nearest face at every pixel.

    verts_uvs: (T, 2) in [0, 1] (u right, v down the texture rows); faces_uvs: (F, 3) int64 into verts_uvs.
    Returns (uv (N, H, W, 2), mask (N, H, W) bool); uv is 0 where the mask is False.
    """
    N, H, W, _ = fragments.pix_to_face.shape
    idx, face, bary = covered_pixels(fragments)
    uv = uv_at(face, bary, verts_uvs, faces_uvs)
    return scatter_covered(idx, uv, N * H * W).reshape(N, H, W, 2), fragments.mask


def sample_texture(fragments: Fragments, verts_uvs: torch.Tensor, faces_uvs: torch.Tensor, texture: torch.Tensor,
                   mode: str = "bilinear") -> torch.Tensor:
    """Sample a UV texture at the nearest face of every pixel.

    texture: (N or 1, C, Q, Q') texel layout of ``grid_sample(texture, 2 * uv - 1, align_corners=False)``
    (texel (y, x) at u = (x + 0.5) / Q', v = (y + 0.5) / Q), as ``image_to_surface`` writes it.
    A shared texture (batch 1) is sampled once for all N images (its gradient is not expanded to N).
    Returns (N, C, H, W), zeros on the background.
    """
    N, H, W, _ = fragments.pix_to_face.shape
    if texture.dim() != 4 or texture.shape[0] not in (1, N):
        raise ValueError(f"texture must have shape (N or 1, C, Q, Q) with N = {N}, got {tuple(texture.shape)}")
    C = texture.shape[1]
    idx, face, bary = covered_pixels(fragments)
    uv = uv_at(face, bary, verts_uvs, faces_uvs).to(texture.dtype)  # (M, 2)
    grid = 2 * uv - 1
    if texture.shape[0] == 1:
        vals = F.grid_sample(texture, grid.view(1, 1, -1, 2), mode=mode, align_corners=False)[0, :, 0]  # (C, M)
        flat = texture.new_zeros((C, N * H * W)).index_copy(1, idx, vals)
        return flat.view(C, N, H, W).permute(1, 0, 2, 3)
    # per-image textures: sample each image's covered pixels (grid padded to the largest count)
    n = idx // (H * W)
    counts = torch.bincount(n, minlength=N)
    M = int(counts.max()) if counts.numel() else 0
    out = texture.new_zeros((N, C, H * W))
    if M == 0:
        return out.view(N, C, H, W)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(idx.numel(), device=idx.device) - starts[n]
    g = grid.new_zeros((N, M, 2)).index_put((n, slot), grid)
    vals = F.grid_sample(texture, g.view(N, 1, M, 2), mode=mode, align_corners=False)[:, :, 0]  # (N, C, M)
    picked = vals.permute(0, 2, 1)[n, slot]  # (M', C)
    out = out.permute(0, 2, 1).reshape(N * H * W, C).index_copy(0, idx, picked)
    return out.view(N, H, W, C).permute(0, 3, 1, 2)


def interpolate_vertex_attributes(fragments: Fragments, faces: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
    """Barycentric interpolation of per-vertex attributes at the nearest face.

    faces: (F, 3) int64; attrs: (N, V, D) (or (V, D) shared). Returns (N, H, W, D), zeros on the background.
    """
    N, H, W, _ = fragments.pix_to_face.shape
    if attrs.dim() == 2:
        attrs = attrs[None]
    if attrs.shape[0] not in (1, N):
        raise ValueError(f"attrs must have shape (N, V, D) with N = {N} or (V, D), got {tuple(attrs.shape)}")
    idx, face, bary = covered_pixels(fragments)
    vals = attributes_at(idx, face, bary, faces, attrs, H * W)
    return scatter_covered(idx, vals, N * H * W).reshape(N, H, W, attrs.shape[2])


__all__ = ["attributes_at", "covered_pixels", "interpolate_uv", "interpolate_vertex_attributes", "sample_texture",
           "scatter_covered", "uv_at"]
