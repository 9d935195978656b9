"""The icosphere template: counts, geometry, spherical UVs and the seam split."""

import numpy as np
import pytest
import torch

from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.geometry import make_template
from ntdm_cli.geometry.template import mesh_edges


@pytest.mark.parametrize("s", [0, 1, 2, 3, 4])
def test_counts_sphere_orientation_watertight(s):
    t = make_template(s)
    assert t.verts.shape == (10 * 4 ** s + 2, 3) and t.faces.shape == (20 * 4 ** s, 3)
    assert t.verts.dtype == torch.float32 and t.faces.dtype == torch.int64
    assert t.verts_uvs.dtype == torch.float32 and t.faces_uvs.dtype == torch.int64
    assert t.faces_uvs.shape == t.faces.shape
    v, f = t.verts.double().numpy(), t.faces.numpy()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", n, tri.mean(1)) > 0).all()           # outward, counter-clockwise
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    _, counts = np.unique(e, axis=0, return_counts=True)
    assert (counts == 2).all()                                           # closed 2-manifold
    assert len(mesh_edges(t.faces)) == len(counts) == 30 * 4 ** s        # Euler: V - E + F = 2
    assert np.isclose(v[:, 2].max(), 1) and np.isclose(v[:, 2].min(), -1)  # a vertex on each pole


def test_default_is_2562_vertices():
    t = make_template()
    assert (t.num_verts, t.num_faces, t.subdivisions) == (2562, 5120, 4)


def test_uvs_follow_spherical_angles():
    t = make_template(4)
    uv = t.verts_uvs.double().numpy()
    assert uv.min() >= 0 and uv.max() <= 1
    assert len(np.unique(t.faces_uvs.numpy())) == len(uv)                 # every uv is used
    v3 = t.verts.double().numpy()
    corner_v = v3[t.faces.numpy()]                                       # (F, 3, 3)
    corner_uv = uv[t.faces_uvs.numpy()]                                  # (F, 3, 2)
    polar = np.arccos(np.clip(corner_v[..., 2], -1, 1)) / np.pi
    np.testing.assert_allclose(corner_uv[..., 1], polar, atol=1e-6)       # v = polar angle
    az = (np.arctan2(corner_v[..., 1], corner_v[..., 0]) + np.pi) / (2 * np.pi)
    not_pole = np.abs(corner_v[..., 2]) < 1 - 1e-9
    mid = not_pole & (az > 0.2) & (az < 0.8)
    scale = np.median(az[mid] / corner_uv[..., 0][mid])                  # 1 + m
    assert 1 <= scale < 1.02
    np.testing.assert_allclose(corner_uv[..., 0][mid] * scale, az[mid], atol=1e-6)
    span = corner_uv[..., 0].max(1) - corner_uv[..., 0].min(1)
    ordinary = (span < 0.02)[:, None] & not_pole                    # clamped: the south-cap seam faces
    d = (corner_uv[..., 0] * scale - az)[ordinary]
    assert np.all(np.isclose(np.abs(d), 0, atol=1e-5) | np.isclose(np.abs(d), 1, atol=1e-5))  # u = φ (mod the seam)


def test_seam_split_no_face_spans_texture():
    t = make_template(4)
    uv = t.verts_uvs[t.faces_uvs].double().numpy()                       # (F, 3, 2)
    span = uv[..., 0].max(1) - uv[..., 0].min(1)
    polar = np.degrees(np.arccos(np.clip(t.verts[t.faces].double().numpy()[..., 2], -1, 1)))
    band = ((polar > 30) & (polar < 150)).all(1)
    assert span[band].max() < 0.03                                        # away from the poles faces are narrow
    assert span.max() <= 0.2 + 1e-6                                       # no face spans the texture (pole fans: 72°)
    # the seam vertices carry two u values; they all lie on/next to the seam meridian φ = ±π
    v = t.faces.numpy().reshape(-1)
    u = uv[..., 0].reshape(-1)
    az = np.arctan2(t.verts[:, 1], t.verts[:, 0]).double().numpy()
    multi = [i for i in np.unique(v) if len(np.unique(np.round(u[v == i], 6))) > 1 and abs(t.verts[i, 2]) < 1 - 1e-6]
    assert len(multi) >= 16                                               # the north-cap seam edge chain at least
    assert all(abs(abs(az[i]) - np.pi) < 0.15 for i in multi if t.verts[i, 2] > -0.85)  # (south cap: wide faces)
    assert t.num_verts < len(t.verts_uvs) < t.num_verts + 100


def test_bad_subdivisions():
    with pytest.raises(NtdmUsageError, match="subdivisions"):
        make_template(9)
