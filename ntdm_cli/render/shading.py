"""RGB images of meshes: per-pixel Lambert / Phong / Blinn-Phong shading of interpolated normals (as DIB-R).

:func:`shade` is the one shading formula of ntdm: the renderer's RGB images and the synthetic
generator's images (:mod:`ntdm_cli.data.synth`, Blinn-Phong) both call it.

Lighting is computed in the camera frame (x right, y up, the camera looks down −z), so the default
light comes from above-right of the camera whatever the viewpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ntdm_cli.render.camera import Viewpoint, camera_to_screen, world_to_camera
from ntdm_cli.render.features import interpolate_vertex_attributes, sample_texture
from ntdm_cli.render.rasterize import Fragments, rasterize

SHADINGS = ("phong", "blinn_phong", "lambert", "flat_color")


@dataclass
class Light:
    """A directional light. direction: towards the light, camera frame; the intensities are unitless."""

    direction: tuple[float, float, float] = (0.4, 0.5, 1.0)
    ambient: float = 0.35
    diffuse: float = 0.65
    specular: float = 0.25
    shininess: float = 16.0


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals: verts (N, V, 3), faces (F, 3) counter-clockwise seen from outside
    -> (N, V, 3) unit vectors."""
    tri = verts[:, faces]  # (N, F, 3, 3)
    fn = torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    vn = torch.zeros_like(verts)
    for i in range(3):
        vn = vn.index_add(1, faces[:, i], fn)
    return F.normalize(vn, dim=-1, eps=1e-12)


def shade(normals: torch.Tensor, view: torch.Tensor, albedo: torch.Tensor, light: Light, shading: str) -> torch.Tensor:
    """Per-pixel shading. normals, view (towards the camera), albedo: (..., 3) -> rgb (..., 3) in [0, 1].

    ``light.direction`` (towards the light) is in the same frame as ``normals`` and ``view``.
    rgb = albedo · (ambient + diffuse · max(n·l, 0)) + specular · s · [n·l > 0], clamped to [0, 1], with
    s = max(r·v, 0)^shininess, r the mirrored light direction ("phong"), or s = max(n·h, 0)^shininess,
    h the half vector of l and v ("blinn_phong"); s = 0 for "lambert"; "flat_color" returns the albedo.
    Two-sided: normals facing away from the camera are flipped."""
    if shading not in SHADINGS:
        raise ValueError(f"shading must be one of {', '.join(SHADINGS)}, got {shading!r}")
    if shading == "flat_color":
        return albedo.clamp(0, 1)
    n = F.normalize(normals, dim=-1, eps=1e-12)
    v = F.normalize(view, dim=-1, eps=1e-12)
    n = torch.where((n * v).sum(-1, keepdim=True) < 0, -n, n)
    ldir = F.normalize(torch.tensor(light.direction, dtype=n.dtype, device=n.device), dim=0)
    ndl = (n * ldir).sum(-1, keepdim=True)
    color = albedo * (light.ambient + light.diffuse * ndl.clamp_min(0))
    if shading in ("phong", "blinn_phong") and light.specular > 0:
        if shading == "phong":
            cos = (v * (2 * ndl * n - ldir)).sum(-1, keepdim=True)
        else:
            cos = (n * F.normalize(ldir + v, dim=-1, eps=1e-12)).sum(-1, keepdim=True)
        color = color + light.specular * cos.clamp_min(0) ** light.shininess * (ndl > 0)
    return color.clamp(0, 1)


def render_rgb(
    verts_world: torch.Tensor,
    faces: torch.Tensor,
    vp: Viewpoint,
    image_size: tuple[int, int],
    vertex_colors: torch.Tensor | None = None,
    texture: torch.Tensor | None = None,
    verts_uvs: torch.Tensor | None = None,
    faces_uvs: torch.Tensor | None = None,
    light: Light | dict[str, Any] | None = None,
    shading: str = "phong",
    background: float | tuple[float, float, float] = 0.0,
    stride: float = 1.0,
    cull_backfaces: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor, Fragments]:
    """Render shaded RGB images of N meshes seen from N viewpoints.

    verts_world: (N, V, 3) (or (V, 3) shared) world; faces: (F, 3) int64 counter-clockwise from outside;
    vp: N viewpoints; image_size: (H, W) pixels.
    Colour from ``vertex_colors`` (N, V, 3) / (V, 3) in [0, 1], or from ``texture`` (N or 1, 3, Q, Q) with
    ``verts_uvs`` (T, 2) and ``faces_uvs`` (F, 3); grey when neither is given.
    Returns (rgb (N, H, W, 3) in [0, 1], mask (N, H, W) bool, fragments).
    """
    if isinstance(light, dict):
        light = Light(**light)
    light = light or Light()
    n = len(vp)
    if verts_world.dim() == 2:
        verts_world = verts_world[None]
    verts_world = verts_world.expand(n, -1, -1)
    cam = world_to_camera(verts_world, vp)
    screen = camera_to_screen(cam, vp, stride)
    frags = rasterize(screen, faces, image_size, cull_backfaces=cull_backfaces, backend=backend)
    H, W = frags.pix_to_face.shape[1:3]
    mask = frags.mask
    normals = interpolate_vertex_attributes(frags, faces, vertex_normals(cam, faces))
    view = -interpolate_vertex_attributes(frags, faces, cam)
    if texture is not None:
        if verts_uvs is None or faces_uvs is None:
            raise ValueError("a texture needs verts_uvs and faces_uvs")
        albedo = sample_texture(frags, verts_uvs, faces_uvs, texture).permute(0, 2, 3, 1)
    elif vertex_colors is not None:
        albedo = interpolate_vertex_attributes(frags, faces, vertex_colors.to(cam.dtype))
    else:
        albedo = torch.full((n, H, W, 3), 0.7, dtype=cam.dtype, device=cam.device)
    rgb = shade(normals, view, albedo.to(cam.dtype), light, shading)
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device).expand(3)
    rgb = torch.where(mask[..., None], rgb, bg)
    return rgb, mask, frags


__all__ = ["Light", "SHADINGS", "render_rgb", "shade", "vertex_normals"]
