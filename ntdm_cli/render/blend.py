"""Blending of per-fragment colours/features into images (PyTorch3D's ``blending`` semantics).

``colors`` are per-fragment values (N, H, W, K, C) (or (N, H, W, C) for the nearest face only, as
``interpolate_vertex_attributes`` / ``sample_texture`` give); distances are the signed squared pixel
distances of :class:`~ntdm_cli.render.rasterize.Fragments` (negative inside), so σ and δ are in pixels².
Every function returns (image (N, H, W, C), alpha (N, H, W)).
"""

from __future__ import annotations

import torch

from ntdm_cli.render.rasterize import Fragments


def _per_fragment(colors: torch.Tensor, fragments: Fragments) -> torch.Tensor:
    N, H, W, K = fragments.pix_to_face.shape
    if colors.dim() == 4:
        if K != 1:
            colors = torch.cat([colors[..., None, :], colors.new_zeros(N, H, W, K - 1, colors.shape[-1])], -2)
        else:
            colors = colors[..., None, :]
    if colors.shape[:4] != (N, H, W, K):
        raise ValueError(f"colors must have shape (N, H, W, K, C) = ({N}, {H}, {W}, {K}, C), got {tuple(colors.shape)}")
    return colors


def _background(background, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(background, dtype=like.dtype, device=like.device).expand(like.shape[-1])


def hard_blend(colors: torch.Tensor, fragments: Fragments, background: float | torch.Tensor = 0.0):
    """z-buffer: the nearest face's colour where covered, ``background`` elsewhere; alpha = coverage."""
    colors = _per_fragment(colors, fragments)
    mask = fragments.mask
    image = torch.where(mask[..., None], colors[..., 0, :], _background(background, colors))
    return image, mask.to(colors.dtype)


def silhouette(fragments: Fragments, sigma: float | None = None) -> torch.Tensor:
    """Silhouette (N, H, W): coverage when ``sigma`` is None/0, else SoftRas' aggregated probability
    1 − Π_k (1 − sigmoid(−d_k / σ)) over the K faces (σ in pixels²; needs blur_radius > 0 to see
    faces outside their edges)."""
    valid = fragments.pix_to_face >= 0
    if not sigma:
        return valid[..., 0].to(fragments.zbuf.dtype)
    prob = torch.sigmoid(-fragments.dists / sigma) * valid
    return 1 - torch.prod(1 - prob, dim=-1)


def softras_blend(colors: torch.Tensor, fragments: Fragments, sigma: float = 1e-4, gamma: float = 1e-4,
                  background: float | torch.Tensor = 0.0, eps: float = 1e-10, znear: float = 1.0,
                  zfar: float = 100.0):
    """SoftRas (Liu et al., seed 004 eq. 2 and 9): D_k = sigmoid(−d_k/σ); weights
    w_k ∝ D_k·exp(z̃_k/γ) with normalised inverse depth z̃ = (zfar − z)/(zfar − znear) and the
    background weight exp(ε/γ); alpha = 1 − Π(1 − D_k). Reduces to hard blending as σ, γ → 0."""
    colors = _per_fragment(colors, fragments)
    valid = fragments.pix_to_face >= 0
    prob = torch.sigmoid(-fragments.dists / sigma) * valid
    alpha = 1 - torch.prod(1 - prob, dim=-1)
    z_inv = (zfar - fragments.zbuf) / (zfar - znear) * valid
    z_inv_max = z_inv.max(dim=-1, keepdim=True).values.clamp_min(eps)
    weights = prob * torch.exp((z_inv - z_inv_max) / gamma)
    delta = torch.exp((eps - z_inv_max) / gamma).clamp_min(eps)
    denom = weights.sum(-1, keepdim=True) + delta
    image = ((weights[..., None] * colors).sum(-2) + delta * _background(background, colors)) / denom
    return image, alpha


def dibr_blend(colors: torch.Tensor, fragments: Fragments, delta: float = 1.0,
               background: float | torch.Tensor = 0.0):
    """DIB-R (Chen et al., seed 003 eq. 5-6): the nearest face's interpolated colour on covered
    pixels; alpha = 1 − Π_k (1 − exp(−d_k/δ)) with d_k the squared pixel distance to face k (0 inside),
    so covered pixels have alpha 1 and pixels near the silhouette (faces within blur_radius) a soft one.
    Reduces to hard blending as δ → 0."""
    colors = _per_fragment(colors, fragments)
    valid = fragments.pix_to_face >= 0
    d = fragments.dists.clamp_min(0)
    a = torch.exp(-d / delta) * valid
    alpha = 1 - torch.prod(1 - a, dim=-1)
    image = torch.where(fragments.mask[..., None], colors[..., 0, :], _background(background, colors))
    return image, alpha


__all__ = ["dibr_blend", "hard_blend", "silhouette", "softras_blend"]
