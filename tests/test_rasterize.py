"""rasterize(): native kernel vs torch reference, geometry of the fragments, gradients, silhouettes."""

import math

import pytest
import torch

from ntdm_cli.render import Viewpoint, project, rasterize, world_to_camera
from ntdm_cli.bench.raster import icosphere
from ntdm_cli.render.rasterize import native_available, pix_to_face, pytorch3d_available

needs_native = pytest.mark.skipif(not native_available(), reason="compiled extension not built")


def random_mesh(N=3, V=60, F=90, H=13, W=17, seed=0, dtype=torch.float32):
    """Screen-space triangles: most on screen, some off-screen, some behind the camera, degenerate
    (repeated vertex, collinear), edge-on (collinear on screen, different depths)."""
    g = torch.Generator().manual_seed(seed)
    verts = torch.empty(N, V, 3, dtype=torch.float64)
    verts[..., 0] = torch.rand(N, V, generator=g, dtype=torch.float64) * (W + 8) - 4
    verts[..., 1] = torch.rand(N, V, generator=g, dtype=torch.float64) * (H + 8) - 4
    verts[..., 2] = torch.rand(N, V, generator=g, dtype=torch.float64) * 4 + 1
    verts[:, :4, 2] = -torch.rand(N, 4, generator=g, dtype=torch.float64)  # behind the camera
    verts[:, 4:7, 0] += 3 * W  # off-screen
    # edge-on: three collinear screen points with different depths
    verts[:, 7, :2] = torch.tensor([1.0, 1.0])
    verts[:, 8, :2] = torch.tensor([6.0, 4.0])
    verts[:, 9, :2] = torch.tensor([11.0, 7.0])
    faces = torch.randint(10, V, (F, 3), generator=g)
    # small triangles too (a few pixels), as on a real mesh
    small = faces[: F // 3]
    verts_small = verts[:, small[:, 0]]
    for j in (1, 2):
        verts[:, small[:, j], :2] = verts_small[..., :2] + torch.rand(N, small.shape[0], 2, generator=g,
                                                                        dtype=torch.float64) * 4 - 2
    extra = torch.tensor([[0, 1, 12], [13, 2, 3], [4, 5, 6], [7, 8, 9], [14, 14, 15], [16, 17, 16]])
    faces = torch.cat([faces, extra])
    return verts.to(dtype), faces


def assert_same_p2f(a, b, za, zb):
    diff = a != b
    # ties aside: where the face lists differ, the depths agree
    assert torch.allclose(za[diff], zb[diff], rtol=1e-5, atol=1e-6), int(diff.sum())
    assert diff.float().mean() < 0.01


@needs_native
@pytest.mark.parametrize("K,blur,cull,persp", [(1, 0.0, False, True), (3, 0.0, False, False), (4, 1.3, False, True),
                                               (2, 0.0, True, True), (1, 0.7, True, False)])
def test_native_matches_torch_reference(K, blur, cull, persp):
    verts, faces = random_mesh(seed=K)
    H, W = 13, 17
    out = {}
    for backend in ("native", "torch"):
        out[backend] = rasterize(verts, faces, (H, W), faces_per_pixel=K, blur_radius=blur, cull_backfaces=cull,
                                 perspective_correct=persp, backend=backend)
    a, b = out["native"], out["torch"]
    assert a.pix_to_face.shape == (3, H, W, K)
    assert (a.pix_to_face >= 0).sum() > 50
    assert_same_p2f(a.pix_to_face, b.pix_to_face, a.zbuf, b.zbuf)
    same = a.pix_to_face == b.pix_to_face
    for name in ("zbuf", "dists"):
        assert torch.allclose(getattr(a, name)[same], getattr(b, name)[same])
    assert torch.allclose(a.bary_coords[same], b.bary_coords[same])
    p2f = a.pix_to_face
    # faces behind the camera, off-screen, degenerate and edge-on never appear
    for f in (90, 91, 92, 93, 94, 95):
        assert not (p2f == f).any()
    # K ordering: nearest first, empty entries last
    valid = p2f >= 0
    assert (valid[..., 1:] <= valid[..., :-1]).all()
    z = torch.where(valid, a.zbuf, torch.full_like(a.zbuf, math.inf))
    assert (z[..., 1:] >= z[..., :-1]).all()
    # signed distances: negative inside; with blur, outside faces within the radius
    d = a.dists[valid]
    if blur == 0:
        assert (d <= 0).all()
    else:
        assert (d < blur * blur + 1e-4).all() and (d > 0).any()
    bary = a.bary_coords[valid]
    assert torch.allclose(bary.sum(-1), torch.ones_like(bary[:, 0]), atol=1e-5)
    if cull:
        verts_used = verts[0][faces]
        area = ((verts_used[:, 1, 0] - verts_used[:, 0, 0]) * (verts_used[:, 2, 1] - verts_used[:, 0, 1])
                - (verts_used[:, 1, 1] - verts_used[:, 0, 1]) * (verts_used[:, 2, 0] - verts_used[:, 0, 0]))
        shown = p2f[0][p2f[0] >= 0].unique()
        assert (area[shown] < 0).all()


@needs_native
def test_float64_and_large_batch_match():
    verts, faces = random_mesh(N=2, seed=7, dtype=torch.float64)
    a = pix_to_face(verts, faces, (9, 21), 2, backend="native")
    b = pix_to_face(verts, faces, (9, 21), 2, backend="torch")
    assert (a == b).float().mean() > 0.99


def camera_sphere(subdivisions=3, H=48, W=64, radius=0.02, azimuth=0.4, elevation=0.3, theta=0.2, dtype=torch.float64):
    v, f = icosphere(subdivisions, dtype=dtype)
    vp = Viewpoint.create(azimuth, elevation, theta, 5.0, px=W / 2 + 0.3, py=H / 2 - 0.2, dtype=dtype)
    return v * radius, f, vp


@needs_native
def test_fragments_are_geometrically_right():
    """Perspective-correct barycentrics interpolate the 3D point seen at the pixel centre; zbuf is its depth."""
    verts, faces, vp = camera_sphere()
    screen = project(verts, vp)
    fr = rasterize(screen, faces, (48, 64), faces_per_pixel=2)
    valid = fr.pix_to_face >= 0
    n, r, c, k = valid.nonzero().unbind(1)
    f = fr.pix_to_face[valid]
    cam = world_to_camera(verts, vp)[0]
    P = (fr.bary_coords[valid][..., None] * cam[faces[f]]).sum(1)
    x = 3000 * P[:, 0] / -P[:, 2] + float(vp.px)
    y = float(vp.py) - 3000 * P[:, 1] / -P[:, 2]
    assert torch.allclose(x, c.double() + 0.5, atol=1e-6) and torch.allclose(y, r.double() + 0.5, atol=1e-6)
    assert torch.allclose(fr.zbuf[valid], -P[:, 2], atol=1e-9)
    # inside pixels: -dists is the squared distance to the nearest edge (dense samples along the edges)
    inside = fr.dists[valid] < 0
    tri = screen[0][faces[f[inside]]][..., :2]  # (M, 3, 2)
    t = torch.linspace(0, 1, 401, dtype=torch.float64)[:, None]
    pts = torch.cat([tri[:, i, None] + t * (tri[:, (i + 1) % 3, None] - tri[:, i, None]) for i in range(3)], 1)
    p = torch.stack([c, r], -1)[inside].double() + 0.5
    d2 = ((pts - p[:, None]) ** 2).sum(-1).min(1).values
    assert torch.allclose(-fr.dists[valid][inside], d2, rtol=2e-2, atol=1e-4)


@needs_native
def test_backface_culling_on_a_sphere():
    verts, faces, vp = camera_sphere()
    screen = project(verts, vp)
    full = rasterize(screen, faces, (48, 64), faces_per_pixel=2)
    culled = rasterize(screen, faces, (48, 64), faces_per_pixel=2, cull_backfaces=True)
    assert torch.equal(full.mask, culled.mask)
    assert torch.equal(full.pix_to_face[..., 0], culled.pix_to_face[..., 0])  # front surface is nearest
    assert (full.pix_to_face[..., 1] >= 0).sum() > 0.9 * full.mask.sum()  # the back surface behind it
    assert (culled.pix_to_face[..., 1] < 0).all()
    # the faces kept face the camera
    from ntdm_cli.render.camera import camera_center
    C = camera_center(vp.azimuth, vp.elevation, vp.distance)[0]
    tri = verts[faces]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    facing = (normal * (C - tri.mean(1))).sum(-1) > 0
    shown = culled.pix_to_face[culled.pix_to_face >= 0].unique()
    assert facing[shown].all()


@needs_native
def test_sphere_silhouette_area_is_analytic():
    H = W = 256
    v, f = icosphere(4, dtype=torch.float64)
    d, focal_px, r = 5.0, 3000.0, 0.16
    vp = Viewpoint.create(0.3, 0.2, 0.0, d, px=W / 2, py=H / 2, dtype=torch.float64)
    fr = rasterize(project(v * r, vp), f, (H, W))
    R = focal_px * r / math.sqrt(d * d - r * r)  # the silhouette of a sphere centred on the axis
    assert abs(fr.mask.sum().item() / (math.pi * R * R) - 1) < 0.01


@needs_native
def test_gradcheck_bary_zbuf_dists():
    g = torch.Generator().manual_seed(3)
    verts = torch.rand(2, 9, 3, generator=g, dtype=torch.float64) * torch.tensor([9.0, 8.0, 3.0]) + torch.tensor(
        [-1.0, -1.0, 1.0], dtype=torch.float64)
    faces = torch.arange(9).view(3, 3)
    verts.requires_grad_(True)
    kw = dict(image_size=(6, 7), faces_per_pixel=2, blur_radius=0.8, backend="native")
    ref = rasterize(verts, faces, **kw)
    assert (ref.pix_to_face >= 0).sum() > 5

    def fn(v):
        fr = rasterize(v, faces, **kw)
        assert torch.equal(fr.pix_to_face, ref.pix_to_face)
        return fr.bary_coords, fr.zbuf, fr.dists

    assert torch.autograd.gradcheck(fn, (verts,), eps=1e-7, atol=1e-5)
    for persp in (False,):
        assert torch.autograd.gradcheck(lambda v: rasterize(v, faces, (6, 7), perspective_correct=persp).bary_coords,
                                        (verts,), eps=1e-7, atol=1e-5)


def test_torch_backend_gradients_reach_vertices():
    verts, faces, vp = camera_sphere(subdivisions=2, H=16, W=20, radius=0.015, dtype=torch.float32)
    screen = project(verts, vp).requires_grad_(True)
    fr = rasterize(screen, faces, (16, 20), backend="torch")
    (fr.zbuf.sum() + fr.bary_coords[..., 0].sum()).backward()
    assert screen.grad.abs().sum() > 0


def test_bad_inputs_name_the_argument():
    v = torch.rand(1, 3, 3)
    f = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="verts"):
        rasterize(v[0], f, (4, 4))
    with pytest.raises(TypeError, match="faces"):
        rasterize(v, f.int(), (4, 4))
    with pytest.raises(ValueError, match="faces index"):
        rasterize(v, f + 1, (4, 4))
    with pytest.raises(ValueError, match="faces_per_pixel"):
        rasterize(v, f, (4, 4), faces_per_pixel=0)
    with pytest.raises(ValueError, match="backend"):
        rasterize(v, f, (4, 4), backend="opengl")
    with pytest.raises(ValueError, match="image_size"):
        rasterize(v, f, (0, 4))


@needs_native
def test_native_binding_checks():
    from ntdm_cli.ops import load_extension
    ext = load_extension()
    with pytest.raises(ValueError, match="'faces' indexes"):
        ext.rasterize_pix_to_face(torch.rand(1, 3, 3), torch.tensor([[0, 1, 5]]), 4, 4, 1, 0.0, True, False, False)
    with pytest.raises(TypeError, match="'verts'"):
        ext.rasterize_pix_to_face(torch.rand(1, 3, 3).half(), torch.tensor([[0, 1, 2]]), 4, 4, 1, 0.0, True, False, False)


@needs_native
def test_empty_inputs():
    v = torch.rand(2, 3, 3)
    fr = rasterize(v, torch.zeros(0, 3, dtype=torch.int64), (5, 6), faces_per_pixel=2)
    assert fr.pix_to_face.shape == (2, 5, 6, 2) and (fr.pix_to_face == -1).all() and (fr.zbuf == -1).all()
    fr = rasterize(torch.rand(0, 3, 3), torch.tensor([[0, 1, 2]]), (5, 6))
    assert fr.pix_to_face.shape == (0, 5, 6, 1)


@pytest.mark.skipif(not pytorch3d_available(), reason="pytorch3d not importable")
def test_pytorch3d_backend_matches_native():
    verts, faces, vp = camera_sphere(subdivisions=3, dtype=torch.float32)
    screen = project(verts, vp)
    for kw in (dict(), dict(faces_per_pixel=3), dict(cull_backfaces=True)):
        a = rasterize(screen, faces, (48, 64), backend="pytorch3d", **kw)
        b = rasterize(screen, faces, (48, 64), backend="torch", **kw)
        assert (a.pix_to_face == b.pix_to_face).float().mean() > 0.99


@pytest.mark.skipif(not (torch.cuda.is_available() and native_available("cuda")), reason="no CUDA device/kernels")
def test_cuda_matches_cpu():
    for seed, (K, blur, cull) in enumerate([(1, 0.0, False), (3, 1.0, False), (2, 0.0, True)]):
        verts, faces = random_mesh(N=4, seed=seed)
        a = rasterize(verts, faces, (13, 17), faces_per_pixel=K, blur_radius=blur, cull_backfaces=cull, backend="native")
        b = rasterize(verts.cuda(), faces.cuda(), (13, 17), faces_per_pixel=K, blur_radius=blur, cull_backfaces=cull,
                      backend="native")
        assert torch.equal(a.pix_to_face, b.pix_to_face.cpu())
        assert torch.allclose(a.zbuf, b.zbuf.cpu(), atol=1e-5)
