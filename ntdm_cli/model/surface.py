"""Rasterising a (deformed) category mesh for NTDM: UV fragments, viewing coefficients, and the
rendered neural-texture feature map (NTDM eq. 4-5, inference sec. 3.4)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ntdm_cli.model.texture import viewing_coefficients
from ntdm_cli.render import camera_center, project, rasterize, vertex_normals
from ntdm_cli.render.features import attributes_at, covered_pixels, scatter_covered, uv_at


class SurfaceFragments:
    """What a render-and-compare step needs from one rasterisation.

    Attributes:
        fragments: rasterizer output at the feature-map resolution; mask: (N, H, W) bool silhouette.
        idx: (M,) int64 flat indices into N·H·W of the M covered pixels (the mask's True entries).
        uv_covered: (M, 2) texture coordinates and alpha_covered: (M, b) viewing coefficients at those
            pixels (what rendering reads).
        uv: (N, H, W, 2) and alpha: (N, H, W, b): the same as full maps, 0 off the silhouette; built
            on first access (training observes them; render-and-compare never needs them).
    """

    def __init__(self, fragments, mask: torch.Tensor, idx: torch.Tensor, uv_covered: torch.Tensor,
                 alpha_covered: torch.Tensor):
        self.fragments, self.mask, self.idx = fragments, mask, idx
        self.uv_covered, self.alpha_covered = uv_covered, alpha_covered

    def _full(self, values: torch.Tensor) -> torch.Tensor:
        N, H, W = self.mask.shape
        return scatter_covered(self.idx, values, N * H * W).reshape(N, H, W, -1)

    @functools.cached_property
    def uv(self) -> torch.Tensor:
        return self._full(self.uv_covered)

    @functools.cached_property
    def alpha(self) -> torch.Tensor:
        return self._full(self.alpha_covered)


def without_faces(screen: torch.Tensor, faces: torch.Tensor, solid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """N meshes whose faces differ per mesh, for a rasterizer that shares one face tensor: the screen
    vertices (N, V, 3) as triangle soups (N, 3F, 3) on the faces (F, 3) = (3f, 3f+1, 3f+2), so a face
    keeps its index and its corners' order; the faces that are not ``solid`` (N, F) bool get their
    corners behind the camera (depth -1), which the rasterizer skips."""
    F_ = faces.shape[0]
    tri = screen[:, faces.reshape(-1)]                                   # (N, 3F, 3)
    hidden = (~solid.to(tri.device)).repeat_interleave(3, 1)            # (N, 3F)
    depth = torch.where(hidden, torch.full_like(tri[..., 2], -1.0), tri[..., 2])
    soup = torch.arange(3 * F_, device=faces.device).view(F_, 3)
    return torch.cat([tri[..., :2], depth.unsqueeze(-1)], -1), soup


def rasterize_surface(verts: torch.Tensor, faces: torch.Tensor, verts_uvs: torch.Tensor, faces_uvs: torch.Tensor,
                      viewpoint, image_size: tuple[int, int], stride: float, num_bins: int,
                      temperature: float = 5.0, solid: torch.Tensor | None = None) -> SurfaceFragments:
    """Rasterise meshes verts (N, V, 3) (object = world frame) seen from ``viewpoint`` (N hypotheses)
    onto an (H, W) feature map whose pixels are ``stride`` image pixels wide. ``solid`` (N, F) bool:
    the faces of each mesh that are rasterised (geometry.holes; None: all), so what lies behind a
    mesh's holes shows through them.

    Normals, directions to the camera and viewing coefficients are computed at the M covered pixels
    only (a 16×16 map of a small object is mostly background); the full maps are built on demand.
    Normals are the closed mesh's either way."""
    screen = project(verts, viewpoint, stride=stride)
    if solid is None:
        frags = rasterize(screen, faces, image_size=image_size, faces_per_pixel=1)
    else:
        frags = rasterize(*without_faces(screen, faces, solid), image_size=image_size, faces_per_pixel=1)
    N, H, W = frags.pix_to_face.shape[:3]
    idx, face, bary = covered_pixels(frags)
    uv_c = uv_at(face, bary, verts_uvs, faces_uvs)  # (M, 2)
    attrs = torch.cat([vertex_normals(verts, faces), verts], -1)  # (N, V, 6)
    pix = attributes_at(idx, face, bary, faces, attrs, H * W)  # (M, 6)
    normals = F.normalize(pix[:, :3], dim=-1)
    centre = camera_center(viewpoint.azimuth, viewpoint.elevation, viewpoint.distance)  # (N, 3)
    to_cam = F.normalize(centre.index_select(0, idx // (H * W)) - pix[:, 3:], dim=-1)
    alpha_c = viewing_coefficients(normals, to_cam, num_bins, temperature)  # (M, b)
    return SurfaceFragments(frags, frags.mask, idx, uv_c, alpha_c)


def render_covered(surface: SurfaceFragments, theta: torch.Tensor) -> torch.Tensor:
    """Rendered neural-texture features at the M covered pixels: (d, M), Σ_b α_b · Θ_b(uv) normalised
    to unit length; column m is pixel ``surface.idx[m]``. theta: (b, q, q, d).

    Each bin is sampled at the M points (grid_sample), weighted by its α and summed into one (d, M)
    tensor, so no (N, b·d, H, W) tensor is held and nothing is computed for background pixels."""
    grid = (2 * surface.uv_covered - 1).to(theta.dtype).view(1, 1, -1, 2)
    acc = None
    for k in range(theta.shape[0]):
        tex = theta[k].permute(2, 0, 1).unsqueeze(0)  # (1, d, q, q)
        vals = F.grid_sample(tex, grid, mode="bilinear", align_corners=False)[0, :, 0]  # (d, M)
        term = vals * surface.alpha_covered[:, k].to(theta.dtype)
        acc = term if acc is None else acc + term
    return F.normalize(acc, dim=0)


def render_features(surface: SurfaceFragments, verts_uvs: torch.Tensor, faces_uvs: torch.Tensor,
                    theta: torch.Tensor) -> torch.Tensor:
    """Rendered neural-texture features (N, d, H, W): Σ_b α_b · Θ_b(uv), unit length inside the mask
    and 0 outside. theta: (b, q, q, d). :func:`render_covered` scattered into the map once;
    ``verts_uvs`` and ``faces_uvs`` are the ones ``surface`` was rasterised with (its uv holds them)."""
    N, H, W = surface.mask.shape
    d = theta.shape[-1]
    flat = theta.new_zeros((d, N * H * W)).index_copy(1, surface.idx, render_covered(surface, theta))
    return flat.view(d, N, H, W).permute(1, 0, 2, 3)
