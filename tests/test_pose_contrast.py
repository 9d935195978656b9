"""train.pose_contrast: wrong poses, inference's evidence on the training map, and its loss; the
separated starts of the solver (infer.solver.separated_topk)."""

import math

import numpy as np
import pytest
import torch

from ntdm_cli.artifacts import read_artifact
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.infer.solver import Hypotheses, InferConfig, separated_topk, view_angle
from ntdm_cli.train.pose_contrast import pose_contrast_loss, pose_scores, wrong_poses
from ntdm_cli.train.settings import TrainConfig
from tests.conftest import TINY_TRAIN, run_cli
from tests.test_infer import _noiseless_scene


def _rows(hyp: Hypotheses, px: float = 64.0, py: float = 64.0) -> torch.Tensor:
    """Viewpoint rows (N, 8) in VP_KEYS order of hypotheses (focal 1, viewport 3000, as RenderCompare)."""
    n = len(hyp)
    return torch.stack([hyp.azimuth, hyp.elevation, hyp.theta, hyp.distance, torch.ones(n),
                        torch.full((n,), px), torch.full((n,), py), torch.full((n,), 3000.0)], 1)


def test_wrong_poses_turn_the_azimuth_away():
    vp = torch.tensor([[0.3, 0.2, 0.05, 5.0, 1.0, 64.0, 60.0, 3000.0],
                       [2.0, 1.5, 0.0, 4.0, 1.0, 70.0, 64.0, 3000.0]])
    out = wrong_poses(vp, 64, torch.Generator().manual_seed(0))
    assert out.shape == (2, 64, 8)
    turn = torch.remainder(out[..., 0] - vp[:, None, 0] + math.pi, 2 * math.pi) - math.pi
    assert bool((turn.abs() >= math.radians(30) - 1e-5).all()) and bool((turn.abs() <= math.pi + 1e-5).all())
    assert bool((turn > 0).any()) and bool((turn < 0).any())  # both directions
    assert bool(((out[..., 1] - vp[:, None, 1]).abs() <= math.radians(20) + 1e-5).all())
    assert bool((out[..., 1] <= math.pi / 2 + 1e-6).all())  # clamped at the pole
    assert bool(((out[..., 2] - vp[:, None, 2]).abs() <= math.radians(10) + 1e-5).all())
    assert torch.equal(out[..., 3:], vp[:, None, 3:].expand(-1, 64, -1))


def test_pose_scores_are_inference_evidence(tiny_pipeline):
    """Summed over a pose's cells, pose_scores is what RenderCompare.losses charges: (1 − loss)·h·w
    minus the image's background sum; on noiseless features the annotated pose scores highest."""
    truth = dict(azimuth=torch.tensor([2.2]), elevation=torch.tensor([0.25]), theta=torch.tensor([0.1]),
                 distance=torch.tensor([5.0]))
    cfg = InferConfig(init_distance=5.0)
    rc, hyp = _noiseless_scene(tiny_pipeline, 8, truth, cfg)
    rows = torch.cat([_rows(hyp), wrong_poses(_rows(hyp), 6, torch.Generator().manual_seed(1))[0]])  # (7, 8)
    poses = Hypotheses(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], hyp.latent.expand(7, -1), torch.zeros(7, 3))
    with torch.no_grad():
        verts = rc.verts(hyp)  # (1, V, 3)
        losses = rc.losses(poses)
        mask = rc.losses(poses, return_maps=True)[1]
    scores = pose_scores(rc.f, verts, rc.template, rows[None], rc.theta, rc.bank, rc.stride, 5.0)[0]
    cells = int(mask[0].sum())
    expected = (1 - losses) * rc.h * rc.w - rc.bg_sum[0]
    torch.testing.assert_close(scores * cells, expected, atol=1e-4, rtol=1e-4)
    assert int(scores.argmax()) == 0 and float(scores[0]) > float(scores[1:].max()) + 0.05


def test_pose_contrast_gradient_separates_the_annotated_pose(tiny_pipeline):
    """The loss's gradient reaches the features; a step along it lowers the loss."""
    truth = dict(azimuth=torch.tensor([0.7]), elevation=torch.tensor([0.3]), theta=torch.tensor([0.0]),
                 distance=torch.tensor([5.0]))
    rc, hyp = _noiseless_scene(tiny_pipeline, 8, truth, InferConfig(init_distance=5.0))
    rows = torch.cat([_rows(hyp), wrong_poses(_rows(hyp), 6, torch.Generator().manual_seed(2))[0]])[None]
    g = torch.Generator().manual_seed(3)
    noisy = torch.nn.functional.normalize(rc.f + 0.8 * torch.randn(rc.f.shape, generator=g), dim=1)
    feats = noisy.clone().requires_grad_(True)
    verts = rc.verts(hyp).detach()

    def loss_of(f):
        return pose_contrast_loss(pose_scores(f, verts, rc.template, rows, rc.theta, rc.bank, rc.stride, 5.0), 0.05)

    loss = loss_of(feats)
    loss.backward()
    assert feats.grad is not None and float(feats.grad.abs().sum()) > 0
    with torch.no_grad():
        after = loss_of(torch.nn.functional.normalize(feats - 0.05 * feats.grad / feats.grad.norm(), dim=1))
    assert float(after) < float(loss.detach())


def test_pose_contrast_trains_with_a_cached_body(tiny_pipeline, tmp_path):
    """train.pose_negatives with effnet-lite0 (cached body, observation plans, cached occluders): the
    pose curve is recorded, positive and finite, and the run writes a model."""
    out = tmp_path / "pose.h5"
    run_cli("train-textures", "--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers),
            "-o", str(out), "--epochs", "2", *TINY_TRAIN, "--set", "train.backbone=effnet-lite0",
            "--set", "train.class_calib_images=0", "--set", "train.occlude=0.5",
            "--set", "train.occluder_variants=1", "--set", "train.pose_negatives=4")
    curves = read_artifact(out, "model")
    pose = np.asarray(curves["curves/pose"])
    assert len(pose) == 2 and np.isfinite(pose).all() and (pose > 0).all()
    assert np.isfinite(curves["curves/loss"]).all()


@pytest.mark.parametrize("key,value", [("pose_negatives", -1), ("pose_weight", 0.0), ("pose_temperature", -1.0)])
def test_pose_options_are_validated(key, value):
    with pytest.raises(NtdmUsageError, match=f"train.{key}"):
        TrainConfig(**{key: value}).validate()


@pytest.mark.parametrize("value", [-1.0, 180.0, float("nan")])
def test_separation_is_validated(value):
    with pytest.raises(NtdmUsageError, match="infer.separation_deg"):
        InferConfig(separation_deg=value).validate()


def test_separated_topk_picks_distinct_views():
    """Greedy: the lowest loss, then the lowest at least the separation away from every pick; when
    none is that far, the lowest left; the first ``diverse`` picks only are separated."""
    losses = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]])
    az = torch.tensor([[0.0, 0.2, 3.1, 0.1, 1.5], [0.0, 0.2, 3.1, 0.1, 1.5]])
    el = torch.zeros(2, 5)
    sep = math.radians(60)
    assert separated_topk(losses, az, el, 3, sep).tolist() == [[0, 2, 4], [4, 3, 2]]
    assert separated_topk(losses, az, el, 3, 0.0).tolist() == [[0, 1, 2], [4, 3, 2]]
    assert separated_topk(losses, az, el, 4, sep, diverse=2).tolist() == [[0, 2, 1, 3], [4, 3, 2, 1]]
    assert separated_topk(losses, az, el, 5, sep).tolist()[0] == [0, 2, 4, 1, 3]  # runs out of far ones
    assert float(view_angle(torch.tensor(0.0), torch.tensor(math.pi / 2), torch.tensor(2.0), torch.tensor(math.pi / 2))) \
        == pytest.approx(0.0, abs=1e-3)  # from the pole every azimuth is one view
