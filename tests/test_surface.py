"""rasterize_surface / render_features (covered pixels only) against the full-map formulation they
replace: the same uv, mask, viewing coefficients and rendered features, and the same gradients with
respect to the vertices (what the pose solver differentiates)."""

import pytest
import torch
import torch.nn.functional as F

from ntdm_cli.geometry.template import make_template
from ntdm_cli.model.surface import rasterize_surface, render_features
from ntdm_cli.model.texture import viewing_coefficients
from ntdm_cli.render import Viewpoint, camera_center, interpolate_uv, interpolate_vertex_attributes, project, rasterize
from ntdm_cli.render import sample_texture, vertex_normals


def reference_surface(verts, t, vp, size, stride, bins, temperature, theta):
    """The full-map formulation: every quantity on all N·H·W pixels, each bin sampled and scattered
    on its own. Returns (uv, mask, alpha, rendered (N, d, H, W))."""
    frags = rasterize(project(verts, vp, stride=stride), t.faces, image_size=size, faces_per_pixel=1)
    uv, mask = interpolate_uv(frags, t.verts_uvs, t.faces_uvs)
    pix = interpolate_vertex_attributes(frags, t.faces, torch.cat([vertex_normals(verts, t.faces), verts], -1))
    normals = F.normalize(pix[..., :3], dim=-1)
    centre = camera_center(vp.azimuth, vp.elevation, vp.distance)
    to_cam = F.normalize(centre[:, None, None, :] - pix[..., 3:], dim=-1)
    alpha = viewing_coefficients(normals, to_cam, bins, temperature) * mask.unsqueeze(-1)
    out = 0
    for k in range(theta.shape[0]):
        tex = theta[k].permute(2, 0, 1).unsqueeze(0)
        out = out + sample_texture(frags, t.verts_uvs, t.faces_uvs, tex) * alpha[..., k].unsqueeze(1)
    return uv, mask, alpha, F.normalize(out, dim=1) * mask.unsqueeze(1)


@pytest.mark.parametrize("bins", [7, 1])
def test_covered_pixel_rendering_equals_the_full_map_formulation(bins):
    t0 = make_template(2)
    t = type(t0)(t0.verts.double(), t0.faces, t0.verts_uvs.double(), t0.faces_uvs, t0.subdivisions)
    g = torch.Generator().manual_seed(0)
    N, size = 3, (12, 16)
    # hypothesis 2 looks away from the object (nothing covered): its map must be all zeros
    vp = Viewpoint.create(azimuth=torch.tensor([0.3, 2.5, 1.0], dtype=torch.float64),
                          elevation=torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64),
                          theta=torch.tensor([0.0, 0.2, 0.0], dtype=torch.float64),
                          distance=torch.tensor([60.0, 70.0, 60.0], dtype=torch.float64),
                          px=torch.tensor([64.0, 60.0, 3000.0], dtype=torch.float64),
                          py=torch.full((N,), 48.0, dtype=torch.float64))  # image pixels; the map is 1/8
    base = (t.verts * torch.tensor([1.3, 0.8, 0.6], dtype=torch.float64)).expand(N, -1, -1)
    theta = F.normalize(torch.randn(bins, 8, 8, 5, generator=g, dtype=torch.float64), dim=-1)
    weights = torch.randn(N, 5, *size, generator=g, dtype=torch.float64)
    got, want = {}, {}
    for name, fn in (("new", None), ("ref", reference_surface)):
        verts = base.clone().requires_grad_(True)
        if fn is None:
            s = rasterize_surface(verts, t.faces, t.verts_uvs, t.faces_uvs, vp, size, 8.0, bins, 5.0)
            out = (s.uv, s.mask, s.alpha, render_features(s, t.verts_uvs, t.faces_uvs, theta))
        else:
            out = fn(verts, t, vp, size, 8.0, bins, 5.0, theta)
        loss = (out[3] * weights).sum() + (out[2] ** 2).sum() + out[0].sum()
        loss.backward()
        (got if fn is None else want).update(uv=out[0], mask=out[1], alpha=out[2], feat=out[3], grad=verts.grad)
    assert want["mask"][0].sum() > 20 and want["mask"][1].sum() > 20 and want["mask"][2].sum() == 0
    assert torch.equal(got["mask"], want["mask"])
    for k in ("uv", "alpha", "feat", "grad"):
        torch.testing.assert_close(got[k], want[k], rtol=1e-9, atol=1e-10, msg=k)
    assert got["grad"].abs().sum() > 0
    assert got["feat"][2].abs().sum() == 0
