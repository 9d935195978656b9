"""Rendering core: PASCAL3D+ cameras, rasterize() with native/torch/pytorch3d backends, blending,
feature rendering and RGB shading."""

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

__all__ = [
    "Viewpoint",
    "camera_center",
    "camera_to_screen",
    "pose_rotation",
    "project",
    "view_rotation",
    "viewpoint_from_center",
    "world_to_camera",
]
