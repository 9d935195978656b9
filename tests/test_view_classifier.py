"""The view classifier (model.view_classifier): its density over azimuth, its fit, its storage and its
place in the solver's loss."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from ntdm_cli.infer.solver import Hypotheses, InferConfig, RenderCompare
from ntdm_cli.model.backbone import STRIDE
from ntdm_cli.model.io import load_model, save_model
from ntdm_cli.model.view_classifier import ViewClassifier
from ntdm_cli.train.view import fit_view_classifier
from tests.helpers import random_scorer_scene


def _net(bins=12, windows=((4, 4),), **kw):
    torch.manual_seed(0)
    return ViewClassifier(8, len(windows), list(windows), bins=bins, width=4, **kw)


def test_density_is_zero_at_its_mode_periodic_and_differentiable():
    net = _net()
    lp = torch.randn(3, 12, generator=torch.Generator().manual_seed(1)).log_softmax(-1).double()
    grid = torch.linspace(0, 2 * math.pi, 721, dtype=torch.float64)[:-1]
    for n in range(3):
        nll = net.nll(lp[n].expand(len(grid), -1), grid)
        assert float(nll.min()) == pytest.approx(0.0, abs=2e-3)  # the mode on the 5° grid vs 0.5° here
        assert float(nll.min()) >= -2e-3
        mode = grid[nll.argmin()]
        assert float(net.nll(lp[n:n + 1], mode[None] + 2 * math.pi)) == pytest.approx(float(nll.min()), abs=1e-9)
    a = torch.tensor([0.3, 2.0, 5.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: net.nll(lp, x), (a,))
    # a one-hot distribution: lowest at its bin's centre, higher half a bin away
    one = torch.full((1, 12), -30.0, dtype=torch.float64)
    one[0, 3] = 0.0
    c = 3 * 2 * math.pi / 12
    assert float(net.nll(one, torch.tensor([c], dtype=torch.float64))) == pytest.approx(0.0, abs=1e-6)
    assert float(net.nll(one, torch.tensor([c + math.pi / 12], dtype=torch.float64))) > 0.3


def test_soft_targets_and_windows():
    net = _net(windows=((3, 5), (6, 2)))
    t = net.soft_targets(torch.tensor([0.0, math.pi / 2 + 0.01]))
    torch.testing.assert_close(t.sum(1), torch.ones(2))
    assert t.argmax(1).tolist() == [0, 3]
    x = torch.arange(2 * 8 * 12 * 16, dtype=torch.float32).view(2, 8, 12, 16)
    cut = net.prepare(x, 0)  # pooled 2x to 6x8, the central 3x5 window
    assert cut.shape == (2, 8, 3, 5)
    torch.testing.assert_close(cut, F.avg_pool2d(x, 2)[..., 1:4, 1:6])
    padded = net.prepare(x[..., :4, :], 1)  # 2x8 pooled, narrower than the window's 6 rows: zero rows
    assert padded.shape == (2, 8, 6, 2)
    assert float(padded[..., :2, :].abs().sum()) == 0.0 and float(padded[..., 4:, :].abs().sum()) == 0.0


def test_fit_learns_an_azimuth_shown_by_where_a_feature_sits():
    """Images whose azimuth bin (of 4) is shown by the quadrant of a distinctive feature: the fitted
    classifier names the bin of held-out images and its loss falls."""
    g = torch.Generator().manual_seed(0)

    def images(n):
        az = torch.randint(0, 4, (n,), generator=g).float() * (math.pi / 2) + (torch.rand(n, generator=g) - 0.5) * 0.3
        f = torch.randn(n, 8, 16, 16, generator=g) * 0.3
        for i, k in enumerate(torch.round(az / (math.pi / 2)).long() % 4):
            r, c = divmod(int(k), 2)
            f[i, 0, 8 * r:8 * r + 8, 8 * c:8 * c + 8] += 2.0
        return F.normalize(f, dim=1), az

    f, az = images(96)
    net, curve = fit_view_classifier({"features": f.half(), "category": torch.zeros(96, dtype=torch.long),
                                      "azimuth": az}, 1, bins=4, width=8, epochs=12, lr=1e-2)
    assert curve[-1] < curve[0]
    fv, av = images(32)
    pred = net.log_probs(fv, 0).argmax(1)
    truth = torch.round(av / (math.pi / 2)).long() % 4
    assert float((pred == truth).float().mean()) >= 0.9
    assert net.windows == [(8, 8)]


def test_trained_model_stores_its_view_classifier(tiny_pipeline, tmp_path):
    """train.view_epochs > 0 (the tiny config) fits a classifier over the model's categories, reading
    the union crop's whole feature map, and the artifact gives it back with the same outputs."""
    model = load_model(tiny_pipeline.model)
    assert model.view is not None and model.view.categories == len(model.categories)
    assert model.view.temperature == pytest.approx(0.07)
    h, w = (int(x) // STRIDE // 2 for x in model.extra["crop_hw"].split(","))
    assert model.view.windows == [(h, w)] * len(model.categories)
    assert len(model.calibration["view_loss"]) == 2
    feats = F.normalize(torch.randn(2, model.feature_dim, 16, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    before = model.view.log_probs(feats, 1)
    again = load_model(save_model(tmp_path / "m.h5", model))
    torch.testing.assert_close(again.view.log_probs(feats, 1), before)
    torch.testing.assert_close(before.exp().sum(1), torch.ones(2))


def test_view_prior_adds_its_negative_log_density_to_the_loss(tiny_pipeline):
    """With a view classifier the loss is the evidence's plus weight · temperature · nll / cells of
    the scored map, also on the pooled copy that scores the grid; weight 0 leaves the evidence alone.
    On features that favour no pose, the azimuth the classifier names wins."""
    deformer, tex, feats, bank = random_scorer_scene(load_model(tiny_pipeline.model))
    net = _net(bins=12, windows=((4, 4),))
    lp = torch.full((1, 12), -20.0)
    lp[0, 2] = 0.0  # the classifier is sure of 60°
    lp = lp.log_softmax(-1)
    make = lambda az: Hypotheses(torch.tensor(az), torch.tensor([0.2, 0.2]), torch.zeros(2), torch.tensor([5.0, 5.0]),
                                 deformer.latents[[0, 0]].float().clone(), torch.zeros(2, 3))
    plain = RenderCompare(feats, deformer, tex, bank, InferConfig(init_distance=5.0), 5.0, (64.0, 64.0), STRIDE)
    cfg = InferConfig(init_distance=5.0, view_prior=3.0)
    rc = RenderCompare(feats, deformer, tex, bank, cfg, 5.0, (64.0, 64.0), STRIDE, view=(net, lp))
    hyp = make([math.radians(60), math.radians(200)])
    expected = plain.losses(hyp) + 3.0 * net.temperature / 256 * net.nll(lp.expand(2, -1), hyp.azimuth)
    torch.testing.assert_close(rc.losses(hyp), expected)
    torch.testing.assert_close(rc.pooled(2).losses(hyp), plain.pooled(2).losses(hyp)
                               + 3.0 * net.temperature / 256 * net.nll(lp.expand(2, -1), hyp.azimuth))
    off = RenderCompare(feats, deformer, tex, bank, dataclasses.replace(cfg, view_prior=0.0), 5.0, (64.0, 64.0),
                        STRIDE, view=(net, lp))
    torch.testing.assert_close(off.losses(hyp), plain.losses(hyp))
    ties = RenderCompare(torch.zeros(1, 16, 16, 16), deformer, tex, bank, cfg, 5.0, (64.0, 64.0), STRIDE, view=(net, lp))
    loss = ties.losses(hyp)
    assert float(loss[0]) < float(loss[1])


def test_view_term_chooses_among_starts_but_the_evidence_sets_the_fine_pose(tiny_pipeline):
    """By default (infer.view_refine=false) Adam and the compass search follow the evidence alone, so
    the refined poses are those of a scorer without the classifier, and the losses returned to choose
    among them include its term; solve_batch reports each answer's evidence (the class is decided on
    it). With view_refine the term also moves the fine pose."""
    from ntdm_cli.infer.solver import refine, solve_batch

    deformer, tex, feats, bank = random_scorer_scene(load_model(tiny_pipeline.model))
    net = _net(bins=12, windows=((4, 4),))
    lp = torch.full((1, 12), -20.0)
    lp[0, 2] = 0.0
    lp = lp.log_softmax(-1)
    cfg = InferConfig(init_distance=5.0, view_prior=3.0, steps=4, polish_levels=1, azimuths=4, elevations=1,
                      thetas=1, topk=2)
    make = lambda: Hypotheses(torch.tensor([math.radians(75), math.radians(200)]), torch.tensor([0.2, 0.2]),
                              torch.zeros(2), torch.tensor([5.0, 5.0]), deformer.latents[[0, 0]].float().clone(),
                              torch.zeros(2, 3))
    rc = RenderCompare(feats, deformer, tex, bank, cfg, 5.0, (64.0, 64.0), STRIDE, view=(net, lp))
    plain = rc.without_view()
    assert plain.view is None and rc.view is not None
    h0 = make()
    best, loss, _ = refine(rc, h0, rc.losses(h0).detach(), cfg)
    h1 = make()
    ref, ref_loss, _ = refine(plain, h1, plain.losses(h1).detach(), cfg)
    torch.testing.assert_close(ref_loss, plain.losses(ref))
    # the evidence's refined poses, or the start where the full loss prefers it (never worse than it)
    keep_start = rc.losses(make()) < rc.losses(ref)
    for a, b, c in zip(best.fields(), ref.fields(), make().fields()):
        torch.testing.assert_close(a, torch.where(keep_start.view(-1, *[1] * (b.dim() - 1)), c, b))
    torch.testing.assert_close(loss, rc.losses(best))
    assert (loss <= rc.losses(make()) + 1e-6).all()

    h2 = make()
    pulled, _, _ = refine(rc, h2, rc.losses(h2).detach(), dataclasses.replace(cfg, view_refine=True))
    assert not torch.allclose(pulled.azimuth, best.azimuth)

    res = solve_batch(rc, cfg, torch.Generator().manual_seed(0))[0]
    assert res.loss == pytest.approx(float(rc.losses(res.best)[0]), abs=1e-6)
    # topk − 1 starts by the full loss and the last by the evidence; the class reads the lowest
    # evidence among them
    assert len(res.topk) == cfg.topk
    assert res.evidence == pytest.approx(float(plain.losses(res.topk).min()), abs=1e-6)
    assert res.evidence <= float(plain.losses(res.best)[0]) + 1e-6
    assert float(plain.losses(res.best)[0]) <= res.loss + 1e-6  # the term is ≥ 0: relative to the mode


def test_evidence_start_is_the_best_evidence_outside_the_picked_basins():
    from ntdm_cli.infer.solver import evidence_start

    az = torch.tensor([[0.0, 10.0, 90.0, 180.0]]).deg2rad()
    el = torch.zeros(1, 4)
    evidence = torch.tensor([[0.5, 0.1, 0.4, 0.3]])
    sep = math.radians(60)
    # the best evidence (10°) is in the basin of the start picked at 0°: the best beyond it, 180°
    assert evidence_start(evidence, az, el, torch.tensor([[0]]), sep).tolist() == [[3]]
    # picked elsewhere: the evidence's own best
    assert evidence_start(evidence, az, el, torch.tensor([[3]]), sep).tolist() == [[1]]
    # nothing far enough: the lowest not picked
    assert evidence_start(evidence, az, el, torch.tensor([[0, 3]]), math.radians(100)).tolist() == [[1]]


def test_view_inputs_add_occluded_copies(tiny_pipeline):
    """train.view_occlude: besides every clean image, that fraction of them once more with an
    occluder pasted over the object, labelled like the clean one; 0 gives the clean images alone."""
    from ntdm_cli.train.data import TrainingSet
    from ntdm_cli.train.view import view_inputs

    model = load_model(tiny_pipeline.model)
    crop = tuple(int(x) for x in model.extra["crop_hw"].split(","))
    ds = TrainingSet(tiny_pipeline.data, model.categories, "train", crop_hw=crop)
    rows = list(range(min(8, len(ds))))
    clean = view_inputs(model.backbone, ds, rows, "cpu")
    both = view_inputs(model.backbone, ds, rows, "cpu", occlude=1.0, seed=0)
    n = len(rows)
    assert len(clean["category"]) == n and clean["features"].shape[0] == n
    extra = len(both["category"]) - n
    assert 0 < extra <= n  # an image whose mask is empty or full takes no occluder
    torch.testing.assert_close(both["features"][:n], clean["features"][:n])  # one batch: the clean rows first
    copies = both["features"][n:].float()
    # each copy carries the label of a clean image, and its features differ from that image's
    for j in range(extra):
        same = (clean["category"] == both["category"][n + j]) & (clean["azimuth"] == both["azimuth"][n + j])
        assert same.any()
        assert not torch.allclose(copies[j], clean["features"][same][0].float())


def test_view_inputs_mirror_the_occluded_copies(tiny_pipeline):
    """train.view_mirror: the occluded copies are the same pasted images flipped left-right, labelled
    with the mirrored azimuth −a (mod 2π); the clean images are unchanged. Without occluded copies
    the option is refused."""
    from torch import nn

    from ntdm_cli.config import ConfigStore
    from ntdm_cli.errors import NtdmUsageError
    from ntdm_cli.train.data import TrainingSet
    from ntdm_cli.train.settings import TrainConfig
    from ntdm_cli.train.view import view_inputs

    class Pool8(nn.Module):  # a stand-in body whose features commute with a left-right flip
        def forward(self, images):
            return torch.nn.functional.avg_pool2d(images, 8)

    model = load_model(tiny_pipeline.model)
    crop = tuple(int(x) for x in model.extra["crop_hw"].split(","))
    ds = TrainingSet(tiny_pipeline.data, model.categories, "train", crop_hw=crop)
    rows = list(range(min(8, len(ds))))
    plain = view_inputs(Pool8(), ds, rows, "cpu", occlude=1.0, seed=3)
    mirrored = view_inputs(Pool8(), ds, rows, "cpu", occlude=1.0, seed=3, mirror=True)
    n = len(rows)
    assert len(mirrored["category"]) == len(plain["category"]) > n
    torch.testing.assert_close(mirrored["features"][:n], plain["features"][:n])
    torch.testing.assert_close(mirrored["azimuth"][:n], plain["azimuth"][:n])
    torch.testing.assert_close(mirrored["features"][n:], plain["features"][n:].flip(-1))
    torch.testing.assert_close(mirrored["category"], plain["category"])
    expect = torch.remainder(-plain["azimuth"][n:], 2 * math.pi)
    torch.testing.assert_close(mirrored["azimuth"][n:], expect)
    assert not torch.allclose(mirrored["features"][n:].float(), plain["features"][n:].float())
    with pytest.raises(NtdmUsageError, match="train.view_occlude > 0"):
        ConfigStore(overrides=["train.view_mirror=true"]).get("train", TrainConfig).validate()
    ConfigStore(overrides=["train.view_mirror=true", "train.view_occlude=0.5"]).get("train", TrainConfig).validate()
