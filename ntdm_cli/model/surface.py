"""Rasterising a (deformed) category mesh for NTDM: UV fragments, viewing coefficients, and the
rendered neural-texture feature map (NTDM eq. 4-5, inference sec. 3.4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ntdm_cli.model.texture import viewing_coefficients
from ntdm_cli.render import (
    camera_center,
    interpolate_uv,
    interpolate_vertex_attributes,
    project,
    rasterize,
    sample_texture,
    vertex_normals,
)


@dataclass
class SurfaceFragments:
    """What a render-and-compare step needs from one rasterisation.

    Attributes:
        fragments: rasterizer output at the feature-map resolution.
        uv: (N, H, W, 2) texture coordinates; mask: (N, H, W) bool silhouette.
        alpha: (N, H, W, b) viewing coefficients (0 outside the mask).
    """

    fragments: object
    uv: torch.Tensor
    mask: torch.Tensor
    alpha: torch.Tensor


def rasterize_surface(verts: torch.Tensor, faces: torch.Tensor, verts_uvs: torch.Tensor, faces_uvs: torch.Tensor,
                      viewpoint, image_size: tuple[int, int], stride: float, num_bins: int,
                      temperature: float = 5.0) -> SurfaceFragments:
    """Rasterise meshes verts (N, V, 3) (object = world frame) seen from ``viewpoint`` (N hypotheses)
    onto an (H, W) feature map whose pixels are ``stride`` image pixels wide."""
    screen = project(verts, viewpoint, stride=stride)
    frags = rasterize(screen, faces, image_size=image_size, faces_per_pixel=1)
    uv, mask = interpolate_uv(frags, verts_uvs, faces_uvs)
    attrs = torch.cat([vertex_normals(verts, faces), verts], -1)
    pix = interpolate_vertex_attributes(frags, faces, attrs)  # (N, H, W, 6)
    normals = F.normalize(pix[..., :3], dim=-1)
    centre = camera_center(viewpoint.azimuth, viewpoint.elevation, viewpoint.distance)  # (N, 3)
    to_cam = F.normalize(centre[:, None, None, :] - pix[..., 3:], dim=-1)
    alpha = viewing_coefficients(normals, to_cam, num_bins, temperature) * mask.unsqueeze(-1)
    return SurfaceFragments(frags, uv, mask, alpha)


def render_features(surface: SurfaceFragments, verts_uvs: torch.Tensor, faces_uvs: torch.Tensor,
                    theta: torch.Tensor) -> torch.Tensor:
    """Rendered neural-texture features (N, d, H, W): Σ_b α_b · Θ_b(uv), unit length inside the mask
    and 0 outside. theta: (b, q, q, d). Bins are sampled one at a time so that no (N, b·d, H, W)
    tensor is ever held."""
    b = theta.shape[0]
    out = None
    for k in range(b):
        tex = theta[k].permute(2, 0, 1).unsqueeze(0)  # (1, d, q, q)
        sampled = sample_texture(surface.fragments, verts_uvs, faces_uvs, tex)  # (N, d, H, W)
        term = sampled * surface.alpha[..., k].unsqueeze(1)
        out = term if out is None else out + term
    return F.normalize(out, dim=1) * surface.mask.unsqueeze(1)
