"""PASCAL3D+ cameras, batched and differentiable in every viewpoint field.

Convention (docs/design.md, "Conventions"; PASCAL3D+ ``project_3d.m``): a viewpoint is
(azimuth a, elevation e, in-plane rotation theta, distance d, focal, principal point px/py, viewport).
The camera centre is ``C = d·(cos e·sin a, −cos e·cos a, sin e)``; with ``a' = −a`` and
``e' = −(π/2 − e)`` the view rotation is ``R_view = Rx(e')·Rz(a')``. A world point X goes to the camera
frame ``X_c = Rz(theta)·R_view·(X − C)`` (x right, y up, the camera looks down −z; rotating the
camera frame by theta about its optical axis is the same as rotating the projected 2D point by theta).
Projection: ``x = f·M·X_c.x / (−X_c.z) + px``, ``y = −f·M·X_c.y / (−X_c.z) + py`` with ``f·M`` =
focal·viewport pixels, and depth ``−X_c.z`` (positive in front of the camera).

Pixel (row r, col c) has its centre at ``(x, y) = (c + 0.5, r + 0.5)``. A feature map of stride s
sees the same scene with focal and principal point divided by s.

Azimuth 0, elevation 0 puts the camera on the −y axis looking along +y, world +z up in the image
and world +x to the right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ntdm_cli.conventions import VP_KEYS


@dataclass
class Viewpoint:
    """A batch of N PASCAL3D+ viewpoints; every field is a (N,) tensor.

    azimuth, elevation, theta: radians. distance: world units. focal: unitless (PASCAL3D+ uses 1),
    viewport: pixels per focal unit (3000), so the focal length is ``focal * viewport`` pixels.
    px, py: principal point, pixels (image x right, y down).
    """

    azimuth: torch.Tensor
    elevation: torch.Tensor
    theta: torch.Tensor
    distance: torch.Tensor
    focal: torch.Tensor
    px: torch.Tensor
    py: torch.Tensor
    viewport: torch.Tensor

    @classmethod
    def create(
        cls,
        azimuth: Any = 0.0,
        elevation: Any = 0.0,
        theta: Any = 0.0,
        distance: Any = 5.0,
        focal: Any = 1.0,
        px: Any = 0.0,
        py: Any = 0.0,
        viewport: Any = 3000.0,
        *,
        batch_size: int | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> "Viewpoint":
        """Viewpoints from floats, sequences or tensors (scalars broadcast to the batch size, which
        is the largest field length or ``batch_size``). Tensors keep their autograd graph."""
        values = dict(azimuth=azimuth, elevation=elevation, theta=theta, distance=distance, focal=focal,
                      px=px, py=py, viewport=viewport)
        if dtype is None:
            dtype = next((v.dtype for v in values.values() if isinstance(v, torch.Tensor) and v.is_floating_point()),
                         torch.get_default_dtype())
        if device is None:
            device = next((v.device for v in values.values() if isinstance(v, torch.Tensor)), torch.device("cpu"))
        tensors = {k: torch.as_tensor(v, dtype=dtype, device=device).reshape(-1) for k, v in values.items()}
        n = max(t.numel() for t in tensors.values())
        if batch_size is not None:
            n = max(n, int(batch_size))
        out = {}
        for k, t in tensors.items():
            if t.numel() not in (1, n):
                raise ValueError(f"viewpoint field {k!r} has {t.numel()} values, expected 1 or {n}")
            out[k] = t.expand(n) if t.numel() == 1 and n != 1 else t
        return cls(**out)

    @classmethod
    def from_dict(cls, d: dict, **kw: Any) -> "Viewpoint":
        """From a dict of floats (e.g. ``Sample.viewpoint``) or of per-field sequences."""
        return cls.create(**{k: d[k] for k in VP_KEYS if k in d}, **kw)

    @classmethod
    def from_rows(cls, rows: torch.Tensor, device: Any = None) -> "Viewpoint":
        """From stored rows (N, 8) in :data:`ntdm_cli.conventions.VP_KEYS` order, as float32."""
        return cls.create(**{k: rows[:, i].to(device=device, dtype=torch.float32) for i, k in enumerate(VP_KEYS)})

    @classmethod
    def cat(cls, vps: Sequence["Viewpoint"]) -> "Viewpoint":
        return cls(**{k: torch.cat([getattr(v, k) for v in vps]) for k in VP_KEYS})

    def __len__(self) -> int:
        return int(self.azimuth.shape[0])

    def __getitem__(self, index: Any) -> "Viewpoint":
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Viewpoint(**{k: getattr(self, k)[index] for k in VP_KEYS})

    def to(self, *args: Any, **kwargs: Any) -> "Viewpoint":
        return Viewpoint(**{k: getattr(self, k).to(*args, **kwargs) for k in VP_KEYS})

    def detach(self) -> "Viewpoint":
        return Viewpoint(**{k: getattr(self, k).detach() for k in VP_KEYS})

    def expand(self, n: int) -> "Viewpoint":
        """Repeat a single viewpoint n times (N must be 1 or n)."""
        if len(self) == n:
            return self
        if len(self) != 1:
            raise ValueError(f"cannot expand {len(self)} viewpoints to {n}")
        return Viewpoint(**{k: getattr(self, k).expand(n) for k in VP_KEYS})

    def as_dicts(self) -> list[dict]:
        return [{k: float(getattr(self, k)[i]) for k in VP_KEYS} for i in range(len(self))]

    @property
    def device(self) -> torch.device:
        return self.azimuth.device

    @property
    def dtype(self) -> torch.dtype:
        return self.azimuth.dtype


def _rot_x(a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*a.shape, 3, 3)


def _rot_z(a: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(a), torch.sin(a)
    o, z = torch.ones_like(a), torch.zeros_like(a)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*a.shape, 3, 3)


def camera_center(azimuth: torch.Tensor, elevation: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Camera centres ``d·(cos e·sin a, −cos e·cos a, sin e)``: (N,) radians, (N,) -> (N, 3) world."""
    ce = torch.cos(elevation)
    return torch.stack([distance * ce * torch.sin(azimuth), -distance * ce * torch.cos(azimuth),
                        distance * torch.sin(elevation)], -1)


def view_rotation(azimuth: torch.Tensor, elevation: torch.Tensor) -> torch.Tensor:
    """``R_view = Rx(−(π/2 − e))·Rz(−a)``: (N,) radians -> (N, 3, 3)."""
    return _rot_x(elevation - math.pi / 2) @ _rot_z(-azimuth)


def pose_rotation(azimuth: torch.Tensor, elevation: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The rotation of the pose metric, ``R = Rz(theta)·R_view(azimuth, elevation)``: (N,) radians ->
    (N, 3, 3). World -> camera frame (x right, y up, looking down −z)."""
    return _rot_z(theta) @ view_rotation(azimuth, elevation)


def viewpoint_from_center(center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`camera_center`: (N, 3) world -> (azimuth (N,), elevation (N,), distance (N,)),
    radians, azimuth in (−π, π]."""
    distance = torch.linalg.vector_norm(center, dim=-1)
    elevation = torch.asin((center[..., 2] / distance).clamp(-1.0, 1.0))
    azimuth = torch.atan2(center[..., 0], -center[..., 1])
    return azimuth, elevation, distance


def _batch_points(points: torch.Tensor, n: int) -> torch.Tensor:
    if points.dim() == 2:
        points = points.unsqueeze(0)
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape (N, V, 3) or (V, 3), got {tuple(points.shape)}")
    if points.shape[0] == 1 and n != 1:
        points = points.expand(n, -1, -1)
    if points.shape[0] != n:
        raise ValueError(f"points have batch size {points.shape[0]} but the viewpoint has {n}")
    return points


def world_to_camera(points: torch.Tensor, vp: Viewpoint) -> torch.Tensor:
    """``X_c = Rz(theta)·R_view·(X − C)``: points (N, V, 3) world (or (V, 3) / (1, V, 3), shared) ->
    (N, V, 3) camera frame (x right, y up, the camera looks down −z)."""
    points = _batch_points(points, len(vp))
    R = pose_rotation(vp.azimuth, vp.elevation, vp.theta).to(points.dtype)
    C = camera_center(vp.azimuth, vp.elevation, vp.distance).to(points.dtype)
    return (points - C[:, None, :]) @ R.transpose(1, 2)


def camera_to_screen(cam: torch.Tensor, vp: Viewpoint, stride: float = 1.0) -> torch.Tensor:
    """Camera frame (N, V, 3) -> screen (N, V, 3): pixel x (right), pixel y (down), depth (> 0 in front)."""
    depth = -cam[..., 2]
    f = (vp.focal * vp.viewport / stride).to(cam.dtype)[:, None]
    px = (vp.px / stride).to(cam.dtype)[:, None]
    py = (vp.py / stride).to(cam.dtype)[:, None]
    x = f * cam[..., 0] / depth + px
    y = py - f * cam[..., 1] / depth
    return torch.stack([x, y, depth], -1)


def project(points: torch.Tensor, vp: Viewpoint, stride: float = 1.0) -> torch.Tensor:
    """Project world points into pixel coordinates.

    points: (N, V, 3) world (or (V, 3) / (1, V, 3) shared by all N viewpoints); vp: N viewpoints;
    stride: feature-map stride s (focal and principal point scale by 1/s).
    Returns (N, V, 3): pixel x (right), pixel y (down), depth (positive in front of the camera, world
    units). Pixel (row r, col c) has its centre at (c + 0.5, r + 0.5).
    """
    if not stride > 0:
        raise ValueError(f"stride must be positive, got {stride}")
    return camera_to_screen(world_to_camera(points, vp), vp, stride)


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
