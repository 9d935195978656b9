"""Classification from per-category losses: the evidence-gain calibration fit, the calibrated
decision, and its place in train-textures (fitted after the last epoch) and infer (applied,
probabilities and the pose of every category written)."""

import math

import numpy as np
import pytest
import torch

from ntdm_cli.artifacts import read_artifact
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.infer.classify import background_loss, classify, fit_class_calibration
from ntdm_cli.infer.solver import background_scores
from ntdm_cli.model.io import load_model
from tests.conftest import TINY_TRAIN, run_cli


def _scaled_evidence(n=240, seed=0, occlusion=1.0):
    """Losses whose evidence E_c = L_bg − L_c is gain_c × (0.004 for the true class, else ~0.001) ×
    noise: category 1's large gain makes it win most images uncalibrated (the failure seen on real
    models). ``occlusion`` scales all evidence down, as occluders do."""
    rng = np.random.default_rng(seed)
    gain = np.array([1.0, 5.0, 0.6, 0.8])
    y = rng.integers(0, 4, n)
    base = np.full((n, 4), 0.001)
    base[np.arange(n), y] = 0.004
    E = occlusion * gain * base * rng.uniform(0.7, 1.3, (n, 4))
    bg = 0.4 + rng.normal(0, 0.01, n)
    return bg[:, None] - E, bg, y, gain


def test_fit_recovers_category_gains_and_fixes_the_decision():
    L, bg, y, gain = _scaled_evidence()
    raw = (L.argmin(1) == y).mean()
    fit = fit_class_calibration(L, bg, y)
    assert raw < 0.5  # category 1 takes most images uncalibrated
    assert fit["class_accuracy_raw"] == pytest.approx(raw)
    assert fit["class_accuracy"] > 0.9
    w = fit["class_weights"]
    assert np.exp(np.log(w).mean()) == pytest.approx(1.0)
    assert w.argmin() == 1 and w.argmax() == 2  # the fit turns down the loud category, up the quiet one
    spread = lambda g: np.log(g).max() - np.log(g).min()  # noqa: E731
    assert spread(gain * w) < 0.5 * spread(gain)  # the calibrated categories are much closer to one scale
    assert fit["class_temperature"] > 0
    for occlusion in (1.0, 0.2):  # held-out images; the gains transfer when all evidence shrinks
        L2, bg2, y2, _ = _scaled_evidence(seed=1, occlusion=occlusion)
        assert (((bg2[:, None] - L2) * w).argmax(1) == y2).mean() > 0.9


def test_fit_edge_cases():
    empty = fit_class_calibration(np.zeros((0, 3)), np.zeros(0), np.zeros(0, dtype=int))
    assert empty["class_images"] == 0 and np.array_equal(empty["class_weights"], np.ones(3))
    assert np.isnan(empty["class_accuracy"])
    one = fit_class_calibration(np.ones((4, 1)), np.ones(4), np.zeros(4, dtype=int))
    assert np.array_equal(one["class_weights"], np.ones(1))
    flat = fit_class_calibration(np.full((5, 2), 0.3), np.full(5, 0.3), np.array([0, 1, 0, 1, 0]))
    assert np.array_equal(flat["class_weights"], np.ones(2)) and flat["class_accuracy"] == pytest.approx(0.6)
    with pytest.raises(NtdmUsageError, match="non-finite"):
        fit_class_calibration(np.array([[0.1, np.nan]]), np.array([0.2]), np.array([0]))
    with pytest.raises(NtdmUsageError, match="labels"):
        fit_class_calibration(np.array([[0.1, 0.2]]), np.array([0.2]), np.array([2]))
    with pytest.raises(NtdmUsageError, match=r"\(N, C\)"):
        fit_class_calibration(np.zeros((3, 2)), np.zeros(2), np.zeros(3, dtype=int))


def test_background_loss_is_the_object_absent_loss():
    f = torch.nn.functional.normalize(torch.randn(2, 8, 3, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    bank = torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    expected = [1 - np.mean([max(float(f[b, :, i, j] @ bank[k]) for k in range(5))
                             for i in range(3) for j in range(4)]) for b in range(2)]
    np.testing.assert_allclose(background_loss(background_scores(f, bank)).numpy(), expected, rtol=1e-5)
    assert background_loss(background_scores(f, bank, no_background=True)).tolist() == [1.0, 1.0]


def test_classify_applies_gains_to_the_tried_categories():
    cats = ["bus", "car", "sofa"]
    losses = {"bus": 0.300, "car": 0.298}  # sofa not tried (shortlist); evidence 0.002 and 0.004
    cat, probs = classify(losses, 0.302, cats, None)
    assert cat == "car" and set(probs) == {"bus", "car"}
    assert sum(probs.values()) == pytest.approx(1.0) and probs["car"] > probs["bus"]
    cal = {"class_weights": np.array([3.0, 1.0, 0.5]), "class_temperature": 0.001}
    cat, probs = classify(losses, 0.302, cats, cal)
    assert cat == "bus"  # 3 × 0.002 > 1 × 0.004
    assert probs["bus"] == pytest.approx(1 / (1 + np.exp(-0.002 / 0.001)))
    cat, probs = classify({"bus": float("nan"), "car": 0.5}, 0.6, cats, cal)
    assert cat == "car" and probs["bus"] == 0.0
    cat, probs = classify({"bus": float("nan"), "car": float("nan")}, 0.6, cats, cal)
    assert probs == {"bus": 0.5, "car": 0.5}


def test_training_fits_the_class_calibration(tiny_pipeline, tmp_path):
    """The tiny model carries evidence gains fitted on its calibration split (every category solved
    on each image); resuming a finished checkpoint redoes only the calibration; 0 images turns it off."""
    art = read_artifact(tiny_pipeline.model, "model")
    cal = art["calibration"]
    n = int(cal["class_images"])
    assert n == 2  # one calibration image per category (8 images × calib_fraction 0.1)
    assert cal["class_losses"].shape == (n, 2) and np.isfinite(cal["class_losses"]).all()
    assert cal["class_background_loss"].shape == (n,)
    # never worse than no object but for the viewpoint prior's cost, at most its value farthest from the
    # training poses (elevation −π/2, theta half a turn from the mean) on the unpooled feature map
    model = load_model(tiny_pipeline.model)
    cells = math.prod(int(x) // 8 for x in model.extra["crop_hw"].split(","))
    cost = [float(q.loss(torch.tensor([-math.pi / 2]), torch.tensor([q.theta[0] + math.pi]), cells))
            for q in (model.pose_priors[c] for c in model.categories)]
    assert (cal["class_losses"] <= cal["class_background_loss"][:, None] + np.array(cost)[None] + 1e-6).all()
    assert sorted(cal["class_labels"].tolist()) == [0, 1]
    assert cal["class_weights"].shape == (2,) and (cal["class_weights"] > 0).all()
    evidence = cal["class_background_loss"][:, None] - cal["class_losses"]
    assert float(cal["class_accuracy"]) == pytest.approx(
        ((evidence * cal["class_weights"]).argmax(1) == cal["class_labels"]).mean())
    assert "confusion" in cal  # the fast classifier's calibration is kept beside it

    common = ["--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers), *TINY_TRAIN]
    off = tmp_path / "off.h5"
    run_cli("train-textures", *common, "-o", str(off), "--epochs", "1", "--set", "train.class_calib_images=0")
    assert "class_weights" not in read_artifact(off, "model")["calibration"]
    again = tmp_path / "again.h5"  # checkpoint already at 1 epoch: no training, calibration only
    run_cli("train-textures", *common, "-o", str(again), "--epochs", "1", "--resume", str(off) + ".ckpt.h5")
    a, b = load_model(off), load_model(again)
    for k, v in a.backbone.state_dict().items():
        assert np.array_equal(v.numpy(), b.backbone.state_dict()[k].numpy()), k
    cal2 = read_artifact(again, "model")["calibration"]
    assert cal2["class_losses"].shape == (2, 2) and "confusion" in cal2


def test_infer_classifies_with_the_calibration(tiny_pipeline, tmp_path):
    fast = ["--set", "infer.steps=8", "--set", "infer.azimuths=6", "--set", "infer.elevations=2",
            "--set", "infer.thetas=1"]
    base = ["--data", str(tiny_pipeline.data), "--split", "val", "--limit", "2", "--model", str(tiny_pipeline.model)]
    run_cli("infer", *base, "-o", str(tmp_path / "cal.h5"), *fast)
    run_cli("infer", *base, "-o", str(tmp_path / "raw.h5"), *fast, "--set", "infer.calibrated=false")
    weights = load_model(tiny_pipeline.model).calibration["class_weights"]
    for name, w in (("cal", weights), ("raw", np.ones(2))):
        art = read_artifact(tmp_path / f"{name}.h5", "predictions")
        L = art["category_losses"]
        evidence = art["background_loss"][:, None] - L
        assert [art["categories"][j] for j in (evidence * w).argmax(1)] == list(art["category"])
        probs = art["category_probs"]
        assert probs.shape == L.shape
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-9)
        assert [art["categories"][j] for j in probs.argmax(1)] == list(art["category"])
        # the pose solved for every category; the predicted category's is the prediction's pose
        views = art["category_viewpoints"]
        assert views.shape == (len(L), 2, 4) and np.isfinite(views).all()
        pick = [art["categories"].index(c) for c in art["category"]]
        np.testing.assert_allclose(views[np.arange(len(L)), pick, 0], art["azimuth"])
        np.testing.assert_allclose(views[np.arange(len(L)), pick, 3], art["distance"])
    np.testing.assert_array_equal(read_artifact(tmp_path / "cal.h5", "predictions")["category_losses"],
                                  read_artifact(tmp_path / "raw.h5", "predictions")["category_losses"])
