"""Training core without the renderer: textures, EM update, contrastive loss, bank, classifier."""

import torch
import torch.nn.functional as F

from ntdm_cli.model.texture import BackgroundBank, NeuralTexture, viewing_coefficients
from ntdm_cli.train.loop import TrainConfig
from ntdm_cli.train.em import (SurfaceObservation, background_features, batch_loss, image_loss, observe,
                              update_textures)
from ntdm_cli.model.classifier import fast_class_scores
from ntdm_cli.train.losses import (SoftmaxFirstCE, contrastive_loss, omega_from_confusion, tau_mask, texel_uv,
                                  uv_sq_distance)
from tests.helpers import smooth_uv_inputs


def small_cfg() -> TrainConfig:
    """The real training config, at test sizes."""
    return TrainConfig(positives=64, negatives=128, class_negatives=8, tau=0.01)


def test_viewing_coefficients():
    n = F.normalize(torch.randn(50, 3), dim=-1)
    a = viewing_coefficients(n, n, num_bins=7)
    assert torch.allclose(a.sum(-1), torch.ones(50))
    assert (a.argmax(-1) == 0).all()  # looking along the normal favours bin 0
    tilted = viewing_coefficients(n, -n, num_bins=7)
    assert (tilted[:, 0] < a[:, 0]).all()
    assert torch.equal(viewing_coefficients(n, n, num_bins=1), torch.ones(50, 1))


def test_em_step_changes_only_visible_texels_by_momentum_rule():
    g = torch.Generator().manual_seed(0)
    tex = NeuralTexture(3, 16, 8, generator=g)
    before = tex.theta.clone()
    feats = F.normalize(torch.randn(1, 8, 16, 16, generator=g), dim=1)
    visible = torch.zeros(1, 16, 16, dtype=torch.bool)
    visible[0, 4:8, 2:10] = True
    alpha = torch.zeros(1, 3, 16, 16)
    alpha[0, 0] = 0.7
    alpha[0, 1] = 0.3  # bin 2 never sees anything
    obs = SurfaceObservation(feats, alpha * visible, visible)
    update_textures(obs, [0], [tex], momentum=0.9)
    changed = (tex.theta != before).any(-1)  # (b, q, q)
    assert torch.equal(changed[0], visible[0]) and torch.equal(changed[1], visible[0])
    assert not changed[2].any()
    f = feats[0].permute(1, 2, 0)[visible[0]]
    for b, a in ((0, 0.7), (1, 0.3)):
        expect = F.normalize(before[b][visible[0]] + 0.1 * a * (f - before[b][visible[0]]), dim=-1)
        torch.testing.assert_close(tex.theta[b][visible[0]], expect)
    assert torch.allclose(tex.counts[0][visible[0]], torch.full((32,), 0.7))


def test_negatives_respect_tau_and_zero_omega_costs_nothing():
    g = torch.Generator().manual_seed(1)
    f = F.normalize(torch.randn(1, 8, generator=g), dim=-1)
    pos_uv = torch.tensor([[0.995, 0.5]])
    # three negatives within tau (one across the u seam), two far away
    neg_uv = torch.tensor([[0.996, 0.5], [0.005, 0.5], [0.995, 0.52], [0.6, 0.5], [0.995, 0.9]])
    theta_neg = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    bank = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    base = contrastive_loss(f, f, pos_uv, theta_neg, neg_uv, bank, [], tau=0.001)
    theta_neg2 = theta_neg.clone()
    theta_neg2[:3] = f  # identical to the positive, but inside tau: must be ignored
    same = contrastive_loss(f, f, pos_uv, theta_neg2, neg_uv, bank, [], tau=0.001)
    torch.testing.assert_close(base.inner, same.inner)
    assert base.pairs == 2 + 5
    theta_neg2[3] = f  # outside tau: counts
    assert contrastive_loss(f, f, pos_uv, theta_neg2, neg_uv, bank, [], tau=0.001).inner > base.inner + 0.1
    # omega = 0 -> no cross-category pairs at all
    tex = [NeuralTexture(2, 8, 8, generator=g) for _ in range(3)]
    obs = SurfaceObservation(torch.randn(1, 8, 8, 8, generator=g), torch.full((1, 2, 8, 8), 0.5),
                             torch.ones(1, 8, 8, dtype=torch.bool))
    bankobj = BackgroundBank(5, 8, generator=g)
    omega = torch.zeros(3, 3)
    parts0 = image_loss(obs, 0, 0, tex, bankobj, omega, small_cfg(), torch.Generator().manual_seed(0))
    omega[0, 2] = 0.3
    parts1 = image_loss(obs, 0, 0, tex, bankobj, omega, small_cfg(), torch.Generator().manual_seed(0))
    assert parts0.cross.item() == 0.0 and parts1.cross.item() > 0
    assert parts1.pairs - parts0.pairs == small_cfg().positives * small_cfg().class_negatives


def test_omega_from_confusion():
    conf = torch.tensor([[90.0, 8.0, 2.0], [30.0, 70.0, 0.0], [0.0, 0.0, 10.0]])
    w = omega_from_confusion(conf, 0.05)
    assert w[0, 1] == torch.tensor(0.08) and w[0, 2] == 0 and w[1, 0] == torch.tensor(0.3)
    assert (w.diagonal() == 0).all()


def test_background_bank_never_takes_object_pixels():
    g = torch.Generator().manual_seed(0)
    feats = torch.zeros(2, 4, 10, 10)
    obj = torch.zeros(2, 10, 10, dtype=torch.bool)
    obj[:, 2:6, 2:6] = True
    feats[:, 0][obj] = 1.0  # object pixels carry a marker in channel 0
    feats[:, 1][~obj] = 1.0
    picked = background_features(feats, obj, per_image=50, generator=g)
    assert picked.shape[0] > 0 and (picked[:, 0] == 0).all()
    bank = BackgroundBank(8, 4, generator=g)
    bank.push(picked)
    assert bank.filled == 8 and (bank.active()[:, 0] == 0).all()


def test_fast_classifier_prefers_matching_prototypes():
    g = torch.Generator().manual_seed(0)
    protos = [F.normalize(torch.randn(20, 8, generator=g), dim=-1) for _ in range(3)]
    bank = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    feats = protos[1][torch.randint(20, (6 * 6,), generator=g)].T.reshape(1, 8, 6, 6)
    scores = fast_class_scores(feats, protos, bank)
    assert scores.argmax(-1).item() == 1


def test_loss_decreases_with_em_on_fixed_surface():
    """A learnable feature map observed through image_to_surface: a few steps lower the loss."""
    torch.manual_seed(0)
    _, uv, mask = smooth_uv_inputs(2, 1, 12, 12, dtype=torch.float32, noise=0.1, keep=1.0)
    feats = torch.nn.Parameter(torch.randn(2, 16, 12, 12))
    alpha = torch.full((2, 12, 12, 3), 1 / 3)
    tex = [NeuralTexture(3, 32, 16, generator=torch.Generator().manual_seed(0))]
    bank = BackgroundBank(16, 16, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam([feats], lr=0.05)
    losses = []
    for step in range(12):
        g = torch.Generator().manual_seed(step)
        obs = observe(F.normalize(feats, dim=1), uv, mask, alpha, 32)
        parts = [image_loss(obs, i, 0, tex, bank, torch.zeros(1, 1), small_cfg(), g) for i in range(2)]
        loss = sum(p.total for p in parts) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        update_textures(obs, [0, 0], tex, momentum=0.9)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_observed_texels_follow_every_counts_update():
    tex = NeuralTexture(2, 8, 4, generator=torch.Generator().manual_seed(0))
    assert tex.observed().numel() == 64  # nothing observed yet: every texel
    tex.momentum_update(torch.tensor([3, 10]), torch.ones(2, 2, 4), torch.ones(2, 2))
    assert tex.observed().tolist() == [3, 10]
    tex.counts[:, 0, 0] += 1  # any in-place change invalidates the cache
    assert tex.observed().tolist() == [0, 3, 10]


def test_finer_observation_grid_sees_thin_parts():
    """A thin part (narrower than a feature cell) has no fully covered feature-map quad at stride 8, so
    image_to_surface carries none of its texels; observed on a 4× finer grid (what train_step does with
    train.observe_upsample=4) it does."""
    from ntdm_cli.geometry.template import make_template
    from ntdm_cli.model.backbone import STRIDE
    from ntdm_cli.model.surface import rasterize_surface
    from ntdm_cli.render import Viewpoint

    t = make_template(3)
    verts = (t.verts * torch.tensor([1.0, 0.06, 0.06])).unsqueeze(0)  # a thin rod along x
    vp = Viewpoint.create(azimuth=torch.tensor([0.0]), elevation=torch.tensor([0.0]), theta=torch.tensor([0.0]),
                          distance=torch.tensor([40.0]), px=torch.tensor([64.0]), py=torch.tensor([64.0]))
    counts = {}
    for up in (1, 4):
        h = w = 16 * up
        surf = rasterize_surface(verts, t.faces, t.verts_uvs, t.faces_uvs, vp, (h, w), float(STRIDE) / up, 3, 5.0)
        feats = F.interpolate(torch.randn(1, 8, 16, 16, generator=torch.Generator().manual_seed(0)), size=(h, w),
                              mode="bilinear", align_corners=False)
        obs = observe(feats, surf.uv, surf.mask, surf.alpha, 32)
        counts[up] = (int(surf.mask.sum()), int(obs.visible.sum()))
    assert counts[1][0] > 0  # the rod is on the feature map ...
    assert counts[1][1] <= 2  # ... but (almost) none of its texels is observed at stride 8
    assert counts[4][1] >= 20 * max(counts[1][1], 1)


def _ce_oracle(pos, f, keys, bias, mask, kappa):
    s = kappa * torch.bmm(f, keys.transpose(1, 2))
    if bias is not None:
        s = s + bias[:, None, :]
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    return (torch.logsumexp(torch.cat([pos[..., None], s], -1), -1) - pos).mean(-1)


def test_fused_cross_entropy_equals_autograd_and_passes_gradcheck():
    """SoftmaxFirstCE against the plain expression (values and gradients), on unit vectors (shift by the
    Cauchy–Schwarz bound) and on large unnormalised ones (exact row maxima), with masked pairs and
    removed keys (−inf bias); and torch.autograd.gradcheck on every differentiable input."""
    g = torch.Generator().manual_seed(0)
    U, P, K, d = 3, 6, 9, 5
    for unit, kappa in ((True, 1 / 0.07), (False, 20.0)):
        f = torch.randn(U, P, d, generator=g, dtype=torch.float64)
        keys = torch.randn(U, K, d, generator=g, dtype=torch.float64)
        if unit:
            f, keys = F.normalize(f, dim=-1), F.normalize(keys, dim=-1)
        pos = (kappa * (f * F.normalize(torch.randn(U, P, d, generator=g, dtype=torch.float64), dim=-1)).sum(-1))
        bias = torch.randn(U, K, generator=g, dtype=torch.float64)
        bias[0, 2] = bias[1, :] = float("-inf")  # one key removed; image 1 has none left
        mask = torch.rand(U, P, K, generator=g) < 0.3
        for b, m in ((None, None), (bias, None), (None, mask), (bias, mask)):
            ins = [t.clone().requires_grad_() for t in (pos, f, keys)] + ([b.clone().requires_grad_()] if b is not None else [])
            fused = SoftmaxFirstCE.apply(ins[0], ins[1], ins[2], ins[3] if b is not None else None, m, kappa)
            plain = _ce_oracle(ins[0], ins[1], ins[2], ins[3] if b is not None else None, m, kappa)
            torch.testing.assert_close(fused, plain)
            w = torch.randn(U, generator=g, dtype=torch.float64)
            gf = torch.autograd.grad((fused * w).sum(), ins)
            gp = torch.autograd.grad((plain * w).sum(), ins)
            for a, e in zip(gf, gp):
                torch.testing.assert_close(a, e.nan_to_num(0.0))  # the plain bias gradient is nan at −inf
        partial = SoftmaxFirstCE.apply(pos, f, keys, bias, mask[..., :K - 3], kappa)  # a mask of the first keys
        padded = torch.cat([mask[..., :K - 3], torch.zeros(U, P, 3, dtype=torch.bool)], -1)
        torch.testing.assert_close(partial, _ce_oracle(pos, f, keys, bias, padded, kappa))
        finite_bias = bias.clone()
        finite_bias[~torch.isfinite(finite_bias)] = -2.0
        ins = [t.clone().requires_grad_() for t in (pos, f, keys, finite_bias)]
        assert torch.autograd.gradcheck(lambda p, x, k, b: SoftmaxFirstCE.apply(p, x, k, b, mask, kappa), ins)


def test_tau_mask_equals_the_uv_distance_test():
    g = torch.Generator().manual_seed(2)
    # 256²: the paper's texture size; τ 0.3 on it: a threshold past int16
    for q, tau in ((64, 0.01), (16, 0.001), (32, 0.05), (256, 0.01), (256, 0.3)):
        pos = torch.randint(q * q, (3, 50), generator=g)
        neg = torch.randint(q * q, (3, 70), generator=g)
        pos[0, :4] = torch.tensor([0, q - 1, q * q - 1, q * (q // 2)])  # the u seam and the corners
        neg[0, :4] = torch.tensor([q - 1, 0, q * (q - 1), q * (q // 2) + q - 1])
        expect = torch.stack([uv_sq_distance(texel_uv(pos[u], q), texel_uv(neg[u], q)) <= tau for u in range(3)])
        got = tau_mask(pos, neg, q, tau)
        assert torch.equal(got, expect) and 0 < int(got.sum()) < got.numel()


def test_batch_loss_equals_the_per_image_losses():
    """batch_loss draws what image_loss draws image by image and gives the same mean loss, parts, pair
    count and feature gradients; an image with nothing visible is left out of both."""
    g = torch.Generator().manual_seed(3)
    q, d, b, B = 16, 8, 3, 5
    tex = [NeuralTexture(b, q, d, generator=g) for _ in range(3)]
    for t in tex:
        t.counts[:, 2:12, 1:15] += 1
    bank = BackgroundBank(20, d, generator=g)
    omega = torch.tensor([[0.0, 0.4, 0.0], [0.2, 0.0, 0.7], [1.0, 1.0, 0.0]])  # 1, 2 and 2 other categories
    feats = torch.randn(B, d, q, q, generator=g, requires_grad=True)
    alpha = torch.softmax(torch.randn(B, b, q, q, generator=g), 1)
    visible = torch.rand(B, q, q, generator=g) < 0.4
    visible[2] = False
    cats = [0, 1, 2, 1, 0]
    obs = SurfaceObservation(feats, alpha, visible)
    g_draws = torch.Generator().manual_seed(9)
    per = [image_loss(obs, i, c, tex, bank, omega, small_cfg(), g_draws) for i, c in enumerate(cats)]
    used = [p for p in per if p is not None]
    expect = sum(p.total for p in used) / len(used)
    (g_expect,) = torch.autograd.grad(expect, feats)
    parts, idx = batch_loss(obs, cats, tex, bank, omega, small_cfg(), torch.Generator().manual_seed(9))
    assert idx == [0, 1, 3, 4] and parts.inner.shape == (4,)
    torch.testing.assert_close(parts.total, expect)
    torch.testing.assert_close(parts.cross, torch.stack([p.cross for p in used]))
    torch.testing.assert_close(parts.ml, torch.stack([p.ml for p in used]))
    assert parts.pairs == sum(p.pairs for p in used)
    (g_batch,) = torch.autograd.grad(parts.total, feats)
    torch.testing.assert_close(g_batch, g_expect)


def test_refit_is_the_alpha_weighted_mean_direction():
    """NeuralTexture.refit: each bin of a seen texel becomes normalize(Σ α_b f/|f| + prior·Θ_b), texels
    and bins nobody saw keep their value, and counts stay as training left them."""
    from ntdm_cli.train.em import full_texel_sums, texel_sums

    g = torch.Generator().manual_seed(3)
    tex = NeuralTexture(3, 8, 4, generator=g)
    before, counts = tex.theta.clone(), tex.counts.clone()
    feats = torch.randn(2, 4, 8, 8, generator=g) * 3  # not unit length: the mean is of directions
    visible = torch.zeros(2, 8, 8, dtype=torch.bool)
    visible[0, :4] = True
    visible[1, 2:6] = True
    alpha = torch.zeros(2, 3, 8, 8)
    alpha[:, 0] = 0.6
    alpha[:, 1] = 0.4  # bin 2 sees nothing
    obs = SurfaceObservation(feats, alpha * visible[:, None], visible)
    numer, denom = full_texel_sums(texel_sums(obs, [0, 1], 3), tex)
    tex.refit(numer, denom, prior=0.5)
    unit = F.normalize(feats, dim=1).permute(0, 2, 3, 1)  # (2, q, q, d)
    for b, a in ((0, 0.6), (1, 0.4)):
        summed = a * (unit[0] * visible[0, ..., None] + unit[1] * visible[1, ..., None])
        expect = F.normalize(summed + 0.5 * before[b], dim=-1)
        seen = visible.any(0)
        torch.testing.assert_close(tex.theta[b][seen], expect[seen])
        assert torch.equal(tex.theta[b][~seen], before[b][~seen])
    assert torch.equal(tex.theta[2], before[2]) and torch.equal(tex.counts, counts)
