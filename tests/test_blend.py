"""Blending limits, feature rendering (UV, texture, vertex attributes) and RGB shading."""

import math

import pytest
import torch
import torch.nn.functional as F

from ntdm_cli.render import (
    Viewpoint,
    dibr_blend,
    hard_blend,
    interpolate_uv,
    interpolate_vertex_attributes,
    project,
    rasterize,
    render_rgb,
    sample_texture,
    silhouette,
    softras_blend,
    world_to_camera,
)
from ntdm_cli.bench.raster import icosphere


def sphere_scene(N=2, H=24, W=30, subdivisions=2, dtype=torch.float64, **kw):
    v, f = icosphere(subdivisions, dtype=dtype)
    v = v * 0.016
    vp = Viewpoint.create(azimuth=torch.linspace(0.2, 2.0, N, dtype=dtype), elevation=0.3, theta=0.1, distance=5.0,
                          px=W / 2, py=H / 2, dtype=dtype)
    screen = project(v, vp)
    return v, f, vp, screen, rasterize(screen, f, (H, W), **kw)


def spherical_uvs(v):
    u = (torch.atan2(v[:, 1], v[:, 0]) / (2 * math.pi)) % 1.0
    vv = torch.acos((v[:, 2] / v.norm(dim=1)).clamp(-1, 1)) / math.pi
    return torch.stack([u, vv], -1)


def test_blends_reduce_to_hard():
    _, f, _, screen, fr = sphere_scene(faces_per_pixel=8, blur_radius=0.7)
    _, _, _, _, sharp = sphere_scene(faces_per_pixel=1)
    face_colors = torch.rand(f.shape[0], 4, dtype=torch.float64)
    colors = face_colors[fr.pix_to_face.clamp_min(0)]
    hard, hard_alpha = hard_blend(face_colors[sharp.pix_to_face.clamp_min(0)], sharp, background=0.25)
    assert torch.equal(hard_alpha, sharp.mask.double())
    # pixels whose centre is not within 1e-3 px² of an edge of a face in the list
    clear = ((fr.dists.abs() > 1e-3) | (fr.pix_to_face < 0)).all(-1)
    soft, alpha = softras_blend(colors, fr, sigma=1e-9, gamma=1e-5, background=0.25, znear=1, zfar=10)
    assert torch.allclose(soft[clear], hard[clear], atol=1e-6)
    assert torch.allclose(alpha[clear], hard_alpha[clear], atol=1e-6)
    d_img, d_alpha = dibr_blend(face_colors[sharp.pix_to_face.clamp_min(0)], sharp, delta=1e-6, background=0.25)
    assert torch.equal(d_img, hard)
    _, d_alpha = dibr_blend(colors, fr, delta=1e-6, background=0.25)
    assert torch.allclose(d_alpha[clear], hard_alpha[clear], atol=1e-6)
    assert torch.allclose(silhouette(fr, sigma=1e-6)[clear], silhouette(sharp)[clear], atol=1e-6)
    # large sigma / delta: soft values outside the hard silhouette (faces within the blur radius)
    assert (softras_blend(colors, fr, sigma=1.0)[1][~sharp.mask] > 0.01).any()
    assert (dibr_blend(colors, fr, delta=1.0)[1][~sharp.mask] > 0.01).any()
    # gradients of the soft silhouette reach the vertices
    screen = screen.detach().requires_grad_(True)
    fr2 = rasterize(screen, f, fr.pix_to_face.shape[1:3], faces_per_pixel=8, blur_radius=0.7)
    silhouette(fr2, sigma=0.3).sum().backward()
    assert screen.grad.abs().sum() > 0


def test_interpolate_vertex_attributes_recovers_3d_point():
    v, f, vp, _, fr = sphere_scene()
    cam = world_to_camera(v, vp)
    P = interpolate_vertex_attributes(fr, f, cam)
    mask = fr.mask
    n, r, c = mask.nonzero().unbind(1)
    x = 3000 * P[mask][:, 0] / -P[mask][:, 2] + vp.px[n]
    assert torch.allclose(x, c.double() + 0.5, atol=1e-6)
    assert (P[~mask] == 0).all()
    shared = interpolate_vertex_attributes(fr, f, v)  # (V, D) shared by the batch
    assert shared.shape == (2, 24, 30, 3)


def test_interpolate_uv_and_sample_texture():
    v, f, vp, _, fr = sphere_scene()
    uvs = spherical_uvs(v)
    uv, mask = interpolate_uv(fr, uvs, f)
    assert uv.shape == (2, 24, 30, 2) and torch.equal(mask, fr.mask)
    assert (uv[mask] >= 0).all() and (uv[mask] <= 1).all() and (uv[~mask] == 0).all()
    C, Q = 5, 16
    tex = torch.randn(1, C, Q, Q, dtype=torch.float64)
    out = sample_texture(fr, uvs, f, tex)
    ref = F.grid_sample(tex.expand(2, -1, -1, -1), 2 * uv - 1, align_corners=False) * mask[:, None]
    assert out.shape == (2, C, 24, 30) and torch.allclose(out, ref)
    per_image = sample_texture(fr, uvs, f, tex.expand(2, -1, -1, -1).contiguous())
    assert torch.allclose(per_image, ref)
    tex2 = torch.randn(2, C, Q, Q, dtype=torch.float64)
    ref2 = F.grid_sample(tex2, 2 * uv - 1, align_corners=False) * mask[:, None]
    assert torch.allclose(sample_texture(fr, uvs, f, tex2), ref2)


def test_sample_texture_gradients():
    v, f, vp, screen, _ = sphere_scene(N=1, H=8, W=10, subdivisions=1)
    uvs = spherical_uvs(v)
    screen = screen.detach().requires_grad_(True)
    tex = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    ref = rasterize(screen, f, (8, 10))

    def fn(s, t):
        fr = rasterize(s, f, (8, 10))
        assert torch.equal(fr.pix_to_face, ref.pix_to_face)
        return sample_texture(fr, uvs, f, t)

    assert torch.autograd.gradcheck(fn, (screen, tex), eps=1e-7, atol=1e-5)


def test_render_rgb():
    v, f = icosphere(3)
    vp = Viewpoint.create(azimuth=[0.0, 1.0, 2.0], elevation=0.3, distance=5.0, px=20.0, py=16.0)
    colors = (v * 0.5 + 0.5)
    for shading in ("phong", "lambert"):
        rgb, mask, fr = render_rgb(v * 0.02, f, vp, (32, 40), vertex_colors=colors, shading=shading, background=1.0)
        assert rgb.shape == (3, 32, 40, 3) and mask.shape == (3, 32, 40)
        assert (rgb >= 0).all() and (rgb <= 1).all()
        assert (rgb[~mask] == 1).all() and (rgb[mask] < 1).any()
        area = mask.float().sum((1, 2))
        R = 3000 * 0.02 / math.sqrt(25 - 0.02 ** 2)
        assert torch.allclose(area, torch.full_like(area, math.pi * R * R), rtol=0.06)
    tex = torch.rand(1, 3, 8, 8)
    rgb, mask, _ = render_rgb(v * 0.02, f, vp, (32, 40), texture=tex, verts_uvs=spherical_uvs(v), faces_uvs=f)
    assert rgb[mask].std() > 0.02
    with pytest.raises(ValueError, match="shading"):
        render_rgb(v * 0.02, f, vp, (32, 40), shading="toon")


def test_shade_specular_models():
    """Phong mirrors the light about the normal, Blinn-Phong uses the half vector: with the light 45°
    off the normal and the eye on it, their highlights are cos(45°)^s and cos(22.5°)^s."""
    from ntdm_cli.render.shading import Light, shade

    n = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    albedo = torch.tensor([[0.2, 0.3, 0.4]], dtype=torch.float64)
    light = Light(direction=(0.0, 1.0, 1.0), ambient=0.1, diffuse=0.5, specular=0.3, shininess=24.0)
    base = albedo * (0.1 + 0.5 * math.cos(math.pi / 4))
    expect = {"lambert": base, "phong": base + 0.3 * math.cos(math.pi / 4) ** 24,
              "blinn_phong": base + 0.3 * math.cos(math.pi / 8) ** 24, "flat_color": albedo}
    for shading, want in expect.items():
        assert torch.allclose(shade(n, n, albedo, light, shading), want, atol=1e-12), shading
    # two-sided: a normal facing away from the eye is flipped
    assert torch.allclose(shade(-n, n, albedo, light, "blinn_phong"), expect["blinn_phong"], atol=1e-12)
    # no highlight when the light is behind the surface
    back = Light(direction=(0.0, 1.0, -1.0), ambient=0.1, diffuse=0.5, specular=0.3)
    assert torch.allclose(shade(n, n, albedo, back, "blinn_phong"), albedo * 0.1, atol=1e-12)
