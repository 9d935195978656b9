"""The compiled image->surface op against its pure-torch twin, gradcheck, and behaviour."""

import pytest
import torch
import torch.nn.functional as F

from ntdm_cli.ops import image_to_surface, image_to_surface_torch, load_extension
from tests.helpers import smooth_uv_inputs

needs_ext = pytest.mark.skipif(load_extension() is None, reason="compiled extension not built")


def _compare(features, uv, mask, Q, seam=0.2, atol=None):
    a = image_to_surface(features, uv, mask, Q, seam, backend="native")
    b = image_to_surface_torch(features, uv, mask, Q, seam)
    tol = atol if atol is not None else (1e-12 if features.dtype == torch.float64 else 1e-5)
    assert torch.equal(a[2], b[2]), "visible masks differ"
    torch.testing.assert_close(a[1], b[1], atol=tol, rtol=0)
    torch.testing.assert_close(a[0], b[0], atol=tol, rtol=tol)
    return a


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("C", [1, 128])
def test_forward_matches_twin(dtype, C):
    features, uv, mask = smooth_uv_inputs(3, C, 13, 19, dtype=dtype, seed=C)
    surface, weight, visible = _compare(features, uv, mask, 64)
    assert surface.shape == (3, C, 64, 64) and weight.shape == (3, 64, 64)
    assert visible.dtype == torch.bool and visible.sum() > 100


@needs_ext
def test_non_square_and_large_texture():
    features, uv, mask = smooth_uv_inputs(2, 8, 9, 31, coverage=0.6, seed=3)
    _compare(features, uv, mask, 256)


@needs_ext
def test_empty_mask_gives_zeros():
    features, uv, _ = smooth_uv_inputs(2, 4, 8, 8)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    surface, weight, visible = _compare(features, uv, mask, 32)
    assert not visible.any() and surface.abs().sum() == 0 and weight.sum() == 0


@needs_ext
def test_single_quad_reproduces_bilinear_field():
    """One valid quad; the texels inside receive exactly the bilinear interpolation of its corners."""
    features = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    uv = torch.zeros(1, 4, 4, 2, dtype=torch.float64)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    # pixel block (1,1)-(2,2); corners a,b,c,d at uv chosen off texel centres
    corners = {(1, 1): (0.101, 0.203), (1, 2): (0.412, 0.198), (2, 2): (0.395, 0.478), (2, 1): (0.117, 0.466)}
    values = {(1, 1): 1.0, (1, 2): 2.0, (2, 2): 5.0, (2, 1): -1.0}
    for (i, j), (u, v) in corners.items():
        uv[0, i, j] = torch.tensor([u, v], dtype=torch.float64)
        mask[0, i, j] = True
        features[0, 0, i, j] = values[(i, j)]
        features[0, 1, i, j] = 1.0
    Q = 32
    surface, weight, visible = _compare(features, uv, mask, Q, seam=0.5)
    assert visible.sum() > 20
    # every visible texel has weight 1 (one quad) and channel 1 (all ones) interpolates to 1
    assert torch.allclose(weight[visible], torch.ones(()).double())
    assert torch.allclose(surface[0, 1][visible[0]], torch.ones(()).double())
    # channel 0: check one texel against a direct inverse-bilinear solve with scipy-free Newton
    ys, xs = visible[0].nonzero()[0]
    P = torch.tensor([corners[k] for k in [(1, 1), (1, 2), (2, 2), (2, 1)]], dtype=torch.float64) * Q - 0.5
    st = torch.tensor([0.5, 0.5], dtype=torch.float64)
    target = torch.tensor([float(xs), float(ys)], dtype=torch.float64)
    for _ in range(50):
        s, t = st
        w = torch.stack([(1 - s) * (1 - t), s * (1 - t), s * t, (1 - s) * t])
        r = (w[:, None] * P).sum(0) - target
        J = torch.stack([(-(1 - t) * P[0] + (1 - t) * P[1] + t * P[2] - t * P[3]),
                         (-(1 - s) * P[0] - s * P[1] + s * P[2] + (1 - s) * P[3])], 1)
        st = st - torch.linalg.solve(J, r)
    s, t = st
    w = torch.stack([(1 - s) * (1 - t), s * (1 - t), s * t, (1 - s) * t])
    expected = (w * torch.tensor([1.0, 2.0, 5.0, -1.0], dtype=torch.float64)).sum()
    assert surface[0, 0, ys, xs].item() == pytest.approx(expected.item(), abs=1e-9)


@needs_ext
def test_seam_quads_are_skipped():
    features, uv, mask = smooth_uv_inputs(1, 3, 10, 10, coverage=0.5, noise=0.0)
    mask[:] = True
    # wrap the left columns across u = 1 -> 0 like a seam: quads spanning it are wider than 0.2
    uv_seam = uv.clone()
    uv_seam[0, :, :3, 0] = (uv_seam[0, :, :3, 0] + 0.7) % 1.0
    surface, weight, visible = _compare(features, uv_seam, mask, 64)
    _, w_all, _ = image_to_surface(features, uv_seam, mask, 64, seam_threshold=1.0, backend="native")
    # without the threshold the wrap-around quads (18 of them) paint texels across the texture
    assert w_all.sum() > weight.sum() + 100


@needs_ext
def test_sampling_back_recovers_a_smooth_field():
    """Features that are a smooth function of uv come back when the surface is sampled at uv."""
    H, W, Q = 24, 24, 64
    _, uv, _ = smooth_uv_inputs(1, 1, H, W, noise=0.0, coverage=0.8)
    mask = torch.ones(1, H, W, dtype=torch.bool)
    feat = torch.stack([torch.sin(3 * uv[..., 0]) + uv[..., 1], uv[..., 0] * uv[..., 1]], 1)  # (1,2,H,W)
    surface, _, visible = image_to_surface(feat, uv, mask, Q, backend="native")
    inner = uv[0, 4:-4, 4:-4]
    grid = (2 * inner - 1)[None]
    back = F.grid_sample(surface, grid, align_corners=False)[0]
    vis = F.grid_sample(visible[:, None].double(), grid, align_corners=False)[0, 0] > 0.999
    assert vis.sum() > 50
    err = (back - feat[0, :, 4:-4, 4:-4]).abs()[:, vis]
    assert err.max() < 0.02


@needs_ext
@pytest.mark.parametrize("which", ["native", "torch"])
def test_gradcheck(which):
    features, uv, mask = smooth_uv_inputs(2, 3, 5, 6, dtype=torch.float64, noise=0.2, seed=7)
    features.requires_grad_(True)
    uv.requires_grad_(True)
    fn = (lambda f, u: image_to_surface(f, u, mask, 16, backend="native")[0]) if which == "native" else \
         (lambda f, u: image_to_surface_torch(f, u, mask, 16)[0])
    assert torch.autograd.gradcheck(fn, (features, uv), eps=1e-6, atol=1e-5)


@needs_ext
def test_backward_matches_twin_float32_c128():
    features, uv, mask = smooth_uv_inputs(2, 128, 10, 12, dtype=torch.float32, seed=11)
    grads = []
    for fn in (lambda f, u: image_to_surface(f, u, mask, 48, backend="native"),
               lambda f, u: image_to_surface_torch(f, u, mask, 48)):
        f = features.clone().requires_grad_(True)
        u = uv.clone().requires_grad_(True)
        surface, _, _ = fn(f, u)
        (surface * torch.linspace(-1, 1, surface.numel()).view_as(surface)).sum().backward()
        grads.append((f.grad, u.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-3, rtol=1e-3)


def test_twin_runs_without_extension(monkeypatch):
    features, uv, mask = smooth_uv_inputs(1, 2, 6, 6)
    a = image_to_surface(features, uv, mask, 16, backend="torch")
    b = image_to_surface_torch(features, uv, mask, 16)
    assert torch.equal(a[0], b[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(features=torch.zeros(1, 2, 4)), "features must be"),
        (dict(uv=torch.zeros(1, 4, 4, 3)), "uv must have shape"),
        (dict(mask=torch.zeros(1, 4, 4)), "mask must be a bool"),
        (dict(texture_size=0), "texture_size"),
        (dict(uv=torch.zeros(1, 4, 4, 2, dtype=torch.float64)), "uv has dtype"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = dict(features=torch.zeros(1, 2, 4, 4), uv=torch.zeros(1, 4, 4, 2),
                mask=torch.zeros(1, 4, 4, dtype=torch.bool), texture_size=8)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        image_to_surface(**args)


@needs_ext
def test_binding_layer_names_bad_argument():
    ext = load_extension()
    feat = torch.zeros(1, 4, 4, 2)
    with pytest.raises(ValueError, match="'uv'"):
        ext.image_to_surface_forward(feat, torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4, dtype=torch.uint8), 8, 0.2)
    with pytest.raises(TypeError, match="'mask'"):
        ext.image_to_surface_forward(feat, torch.zeros(1, 4, 4, 2), torch.zeros(1, 4, 4), 8, 0.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    from ntdm_cli.ops import has_cuda_kernels

    if not has_cuda_kernels():
        pytest.skip("extension built without CUDA kernels")
    features, uv, mask = smooth_uv_inputs(3, 64, 16, 20, dtype=torch.float32, seed=5)
    cpu = image_to_surface(features, uv, mask, 64, backend="native")
    f = features.cuda().requires_grad_(True)
    u = uv.cuda().requires_grad_(True)
    gpu = image_to_surface(f, u, mask.cuda(), 64, backend="native")
    assert torch.equal(cpu[2], gpu[2].cpu())
    torch.testing.assert_close(cpu[0], gpu[0].cpu(), atol=1e-5, rtol=1e-4)
    gpu[0].sum().backward()
    fc = features.clone().requires_grad_(True)
    uc = uv.clone().requires_grad_(True)
    image_to_surface(fc, uc, mask, 64, backend="native")[0].sum().backward()
    torch.testing.assert_close(fc.grad, f.grad.cpu(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(uc.grad, u.grad.cpu(), atol=1e-2, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_reproduce_the_transform(dtype):
    """image_to_surface_weights is the transform as a sparse matrix: summing weight · feature over its
    entries gives the twin's surface (and the compiled op's, when built), its totals the weight sum;
    an empty mask gives no entries."""
    from ntdm_cli.ops import image_to_surface_weights

    features, uv, mask = smooth_uv_inputs(3, 6, 13, 19, dtype=dtype, seed=4)
    Q = 32
    n, texel, pixel, weight, total = image_to_surface_weights(uv, mask, Q)
    N, C, H, W = features.shape
    flat = features.permute(0, 2, 3, 1).reshape(N * H * W, C)
    surface = flat.new_zeros(N * Q * Q, C).index_add_(0, n * Q * Q + texel, flat[n * H * W + pixel] * weight[:, None])
    surface = surface.view(N, Q, Q, C).permute(0, 3, 1, 2)
    ref, ref_weight, visible = image_to_surface_torch(features, uv, mask, Q)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(surface, ref, atol=tol, rtol=tol)
    torch.testing.assert_close(total, ref_weight, atol=tol, rtol=0)
    assert visible.sum() > 50 and weight.min() >= 0
    if load_extension() is not None:
        torch.testing.assert_close(surface, image_to_surface(features, uv, mask, Q, backend="native")[0],
                                   atol=tol, rtol=tol)
    none = image_to_surface_weights(uv, torch.zeros_like(mask), Q)
    assert none[0].numel() == 0 and not none[4].any()
