"""PASCAL3D+ camera: closed-form formulas, known points, stride, inverse, gradients."""

import math

import numpy as np
import pytest
import torch

from ntdm_cli.render.camera import (
    Viewpoint,
    camera_center,
    pose_rotation,
    project,
    viewpoint_from_center,
    world_to_camera,
)


def project_matlab(X, a, e, theta, d, focal, px, py, viewport):
    """PASCAL3D+ project_3d.m, transcribed literally from DESIGN.md (numpy, float64)."""
    C = np.array([d * math.cos(e) * math.sin(a), -d * math.cos(e) * math.cos(a), d * math.sin(e)])
    a2, e2 = -a, -(math.pi / 2 - e)
    Rz = np.array([[math.cos(a2), -math.sin(a2), 0], [math.sin(a2), math.cos(a2), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, math.cos(e2), -math.sin(e2)], [0, math.sin(e2), math.cos(e2)]])
    R = Rx @ Rz
    M = viewport
    P = np.diag([M * focal, M * focal, -1.0]) @ np.hstack([R, (-R @ C)[:, None]])
    x = P @ np.hstack([X, np.ones((len(X), 1))]).T
    depth = x[2].copy()
    xy = x[:2] / x[2]
    R2 = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    xy = (R2 @ xy).T
    xy[:, 1] *= -1
    xy += np.array([px, py])
    return xy, depth


def random_viewpoints(n, seed=0):
    g = np.random.default_rng(seed)
    return dict(azimuth=g.uniform(-math.pi, math.pi, n), elevation=g.uniform(-1.2, 1.2, n),
                theta=g.uniform(-0.5, 0.5, n), distance=g.uniform(4, 8, n), focal=g.uniform(0.8, 1.2, n),
                px=g.uniform(100, 300, n), py=g.uniform(80, 200, n), viewport=np.full(n, 3000.0))


def test_project_matches_closed_form():
    vps = random_viewpoints(6)
    X = np.random.default_rng(1).uniform(-1, 1, (10, 3))
    vp = Viewpoint.create(**{k: torch.tensor(v) for k, v in vps.items()})
    assert vp.dtype == torch.float64
    out = project(torch.tensor(X), vp)
    assert out.shape == (6, 10, 3)
    for i in range(6):
        xy, depth = project_matlab(X, *(vps[k][i] for k in
                                        ("azimuth", "elevation", "theta", "distance", "focal", "px", "py", "viewport")))
        np.testing.assert_allclose(out[i, :, :2].numpy(), xy, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(out[i, :, 2].numpy(), depth, rtol=1e-10, atol=1e-10)
        assert (out[i, :, 2] > 0).all()


def test_azimuth0_elevation0_looks_along_plus_y():
    vp = Viewpoint.create(0.0, 0.0, 0.0, 5.0, px=40.0, py=32.0, dtype=torch.float64)
    assert torch.allclose(camera_center(vp.azimuth, vp.elevation, vp.distance), torch.tensor([[0.0, -5.0, 0.0]],
                                                                                           dtype=torch.float64))
    pts = torch.tensor([[0.0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)
    cam = world_to_camera(pts, vp)[0]
    # origin straight ahead at depth 5; +y is farther away along the optical axis
    assert torch.allclose(cam[0], torch.tensor([0, 0, -5.0], dtype=torch.float64))
    assert torch.allclose(cam[1], torch.tensor([0, 0, -6.0], dtype=torch.float64))
    s = project(pts, vp)[0]
    assert torch.allclose(s[0], torch.tensor([40.0, 32.0, 5.0], dtype=torch.float64))
    assert s[2, 0] > 40 and abs(s[2, 1] - 32) < 1e-9  # world +x to the right
    assert s[3, 1] < 32 and abs(s[3, 0] - 40) < 1e-9  # world +z up
    assert torch.allclose(s[2, 0] - 40, torch.tensor(3000 / 5.0, dtype=torch.float64))


def test_azimuth_90_camera_on_plus_x():
    vp = Viewpoint.create(math.pi / 2, 0.0, 0.0, 3.0, dtype=torch.float64)
    C = camera_center(vp.azimuth, vp.elevation, vp.distance)
    assert torch.allclose(C, torch.tensor([[3.0, 0, 0]], dtype=torch.float64), atol=1e-12)
    # elevation 90 degrees: camera above, looking down
    C = camera_center(torch.tensor([0.3]), torch.tensor([math.pi / 2]), torch.tensor([2.0]))
    assert torch.allclose(C, torch.tensor([[0, 0, 2.0]]), atol=1e-6)


def test_theta_rotates_image_about_principal_point():
    X = torch.randn(7, 3, dtype=torch.float64) * 0.5
    base = Viewpoint.create(0.7, 0.3, 0.0, 6.0, px=50.0, py=40.0, dtype=torch.float64)
    t = 0.4
    rot = Viewpoint.create(0.7, 0.3, t, 6.0, px=50.0, py=40.0, dtype=torch.float64)
    p0, p1 = project(X, base)[0], project(X, rot)[0]
    d0 = p0[:, :2] - torch.tensor([50.0, 40.0], dtype=torch.float64)
    d1 = p1[:, :2] - torch.tensor([50.0, 40.0], dtype=torch.float64)
    # image y points down, so a camera-frame rotation by theta is a rotation by -theta in pixels
    c, s = math.cos(t), math.sin(t)
    expect = torch.stack([c * d0[:, 0] + s * d0[:, 1], -s * d0[:, 0] + c * d0[:, 1]], -1)
    assert torch.allclose(d1, expect, atol=1e-9)
    assert torch.allclose(p0[:, 2], p1[:, 2])
    assert torch.allclose(d0.norm(dim=1), d1.norm(dim=1))


def test_stride_scales_focal_and_principal_point():
    vp = Viewpoint.create(**{k: torch.tensor(v) for k, v in random_viewpoints(3, seed=2).items()})
    X = torch.randn(1, 5, 3, dtype=torch.float64)
    full, s8 = project(X, vp), project(X, vp, stride=8)
    assert torch.allclose(s8[..., :2], full[..., :2] / 8)
    assert torch.allclose(s8[..., 2], full[..., 2])


def test_inverse_round_trip():
    vps = random_viewpoints(20, seed=3)
    a, e, d = (torch.tensor(vps[k]) for k in ("azimuth", "elevation", "distance"))
    a2, e2, d2 = viewpoint_from_center(camera_center(a, e, d))
    assert torch.allclose(a2, a) and torch.allclose(e2, e) and torch.allclose(d2, d)


def test_pose_rotation_is_rotation_and_matches_camera_frame():
    vps = random_viewpoints(5, seed=4)
    vp = Viewpoint.create(**{k: torch.tensor(v) for k, v in vps.items()})
    R = pose_rotation(vp.azimuth, vp.elevation, vp.theta)
    eye = torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(5, dtype=torch.float64))
    # the camera frame of the object origin is (0, 0, -d): R maps C to (0, 0, d)
    C = camera_center(vp.azimuth, vp.elevation, vp.distance)
    assert torch.allclose((R @ C[..., None])[..., 0], torch.stack([0 * vp.distance, 0 * vp.distance, vp.distance], -1),
                          atol=1e-12)


def test_viewpoint_api_and_gradients():
    vp = Viewpoint.create(azimuth=[0.1, 0.2, 0.3], distance=5.0)
    assert len(vp) == 3 and vp[1].azimuth.shape == (1,) and vp[1:].azimuth.shape == (2,)
    assert vp.focal.shape == (3,) and float(vp.viewport[0]) == 3000
    assert len(Viewpoint.cat([vp, vp[0]])) == 4
    with pytest.raises(ValueError, match="azimuth"):
        Viewpoint.create(azimuth=[0.1, 0.2], elevation=[0.1, 0.2, 0.3])
    params = {k: torch.tensor(v[:2], requires_grad=True) for k, v in random_viewpoints(2, seed=5).items()}
    X = torch.randn(2, 4, 3, dtype=torch.float64)

    def f(*vals):
        return project(X, Viewpoint(**dict(zip(params, vals))))

    assert torch.autograd.gradcheck(f, tuple(params.values()))
