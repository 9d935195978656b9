"""Rendering core: PASCAL3D+ cameras, rasterize() with native/torch/pytorch3d backends, blending,
feature rendering and RGB shading (``from ntdm_cli.render import ...``)."""

from ntdm_cli.render.blend import dibr_blend, hard_blend, silhouette, softras_blend
from ntdm_cli.render.camera import (
    Viewpoint,
    camera_center,
    camera_to_screen,
    pose_rotation,
    project,
    view_rotation,
    viewpoint_from_center,
    world_to_camera,
)
from ntdm_cli.render.features import covered_pixels, interpolate_uv, interpolate_vertex_attributes, sample_texture
from ntdm_cli.render.rasterize import (
    Fragments,
    fragments_from_pix_to_face,
    native_available,
    pix_to_face,
    pytorch3d_available,
    rasterize,
    resolve_backend,
)
from ntdm_cli.render.shading import Light, render_rgb, shade, vertex_normals

__all__ = [
    "Fragments",
    "Light",
    "Viewpoint",
    "camera_center",
    "camera_to_screen",
    "covered_pixels",
    "dibr_blend",
    "fragments_from_pix_to_face",
    "hard_blend",
    "interpolate_uv",
    "interpolate_vertex_attributes",
    "native_available",
    "pix_to_face",
    "pose_rotation",
    "project",
    "pytorch3d_available",
    "rasterize",
    "render_rgb",
    "resolve_backend",
    "sample_texture",
    "shade",
    "silhouette",
    "softras_blend",
    "vertex_normals",
    "view_rotation",
    "viewpoint_from_center",
    "world_to_camera",
]
