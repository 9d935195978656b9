"""Classification from per-category losses: the loss calibration fit, the calibrated decision, and
its place in train-textures (fitted after the last epoch) and infer (applied, probabilities written)."""

import numpy as np
import pytest

from ntdm_cli.artifacts import read_artifact
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.infer.classify import classify, fit_loss_calibration
from ntdm_cli.model.io import load_model
from tests.conftest import TINY_TRAIN, run_cli


def _biased_losses(n=240, seed=0):
    """Losses where the true category is 0.004 lower, plus a per-category level that makes category 1
    win most images uncalibrated (the failure seen on real models: one category's losses run low)."""
    rng = np.random.default_rng(seed)
    level = np.array([0.0, -0.006, 0.003, 0.002])
    y = rng.integers(0, 4, n)
    L = 0.3 + rng.normal(0, 0.01, (n, 1)) + rng.normal(0, 0.001, (n, 4)) + level
    L[np.arange(n), y] -= 0.004
    return L, y, level


def test_fit_recovers_category_levels_and_fixes_the_decision():
    L, y, level = _biased_losses()
    raw = (L.argmin(1) == y).mean()
    fit = fit_loss_calibration(L, y)
    assert raw < 0.5  # category 1 takes most images uncalibrated
    assert fit["loss_accuracy_raw"] == pytest.approx(raw)
    assert fit["loss_accuracy"] > 0.9
    assert abs(fit["loss_offsets"].sum()) < 1e-9
    np.testing.assert_allclose(fit["loss_offsets"], level - level.mean(), atol=1.5e-3)
    assert 0 < fit["loss_temperature"] < 0.01
    # held-out images of the same kind: the offsets transfer
    L2, y2, _ = _biased_losses(seed=1)
    assert ((L2 - fit["loss_offsets"]).argmin(1) == y2).mean() > 0.9


def test_fit_edge_cases():
    empty = fit_loss_calibration(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert empty["loss_images"] == 0 and np.array_equal(empty["loss_offsets"], np.zeros(3))
    assert np.isnan(empty["loss_accuracy"])
    one = fit_loss_calibration(np.ones((4, 1)), np.zeros(4, dtype=int))
    assert np.array_equal(one["loss_offsets"], np.zeros(1))
    flat = fit_loss_calibration(np.full((5, 2), 0.3), np.array([0, 1, 0, 1, 0]))  # no spread: nothing to fit
    assert np.array_equal(flat["loss_offsets"], np.zeros(2)) and flat["loss_accuracy"] == pytest.approx(0.6)
    with pytest.raises(NtdmUsageError, match="non-finite"):
        fit_loss_calibration(np.array([[0.1, np.nan]]), np.array([0]))
    with pytest.raises(NtdmUsageError, match="labels"):
        fit_loss_calibration(np.array([[0.1, 0.2]]), np.array([2]))
    with pytest.raises(NtdmUsageError, match=r"\(N, C\)"):
        fit_loss_calibration(np.zeros(3), np.zeros(3, dtype=int))


def test_classify_applies_offsets_to_the_tried_categories():
    cats = ["bus", "car", "sofa"]
    losses = {"bus": 0.300, "car": 0.298}  # sofa not tried (shortlist)
    cat, probs = classify(losses, cats, None)
    assert cat == "car" and set(probs) == {"bus", "car"}
    assert sum(probs.values()) == pytest.approx(1.0) and probs["car"] > probs["bus"]
    cal = {"loss_offsets": np.array([0.0, -0.003, 0.003]), "loss_temperature": 0.001}
    cat, probs = classify(losses, cats, cal)
    assert cat == "bus"  # 0.300 − 0 < 0.298 + 0.003
    assert probs["bus"] == pytest.approx(1 / (1 + np.exp(-0.001 / 0.001)))
    cat, probs = classify({"bus": float("nan"), "car": 0.5}, cats, cal)
    assert cat == "car" and probs["bus"] == 0.0
    cat, probs = classify({"bus": float("nan"), "car": float("nan")}, cats, cal)
    assert probs == {"bus": 0.5, "car": 0.5}


def test_training_fits_the_class_calibration(tiny_pipeline, tmp_path):
    """The tiny model carries loss offsets fitted on its calibration split (every category solved on
    each image); resuming a finished checkpoint redoes only the calibration; 0 images turns it off."""
    art = read_artifact(tiny_pipeline.model, "model")
    cal = art["calibration"]
    n = int(cal["loss_images"])
    assert n == 2  # one calibration image per category (8 images × calib_fraction 0.1)
    assert cal["loss_matrix"].shape == (n, 2) and np.isfinite(cal["loss_matrix"]).all()
    assert sorted(cal["loss_labels"].tolist()) == [0, 1]
    assert cal["loss_offsets"].shape == (2,) and abs(cal["loss_offsets"].sum()) < 1e-9
    assert float(cal["loss_accuracy"]) == pytest.approx(
        ((cal["loss_matrix"] - cal["loss_offsets"]).argmin(1) == cal["loss_labels"]).mean())
    assert "confusion" in cal  # the fast classifier's calibration is kept beside it

    common = ["--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers), *TINY_TRAIN]
    off = tmp_path / "off.h5"
    run_cli("train-textures", *common, "-o", str(off), "--epochs", "1", "--set", "train.class_calib_images=0")
    assert "loss_offsets" not in read_artifact(off, "model")["calibration"]
    again = tmp_path / "again.h5"  # checkpoint already at 1 epoch: no training, calibration only
    run_cli("train-textures", *common, "-o", str(again), "--epochs", "1", "--resume", str(off) + ".ckpt.h5")
    a, b = load_model(off), load_model(again)
    for k, v in a.backbone.state_dict().items():
        assert np.array_equal(v.numpy(), b.backbone.state_dict()[k].numpy()), k
    cal2 = read_artifact(again, "model")["calibration"]
    assert cal2["loss_matrix"].shape == (2, 2) and "confusion" in cal2


def test_infer_classifies_with_the_calibration(tiny_pipeline, tmp_path):
    fast = ["--set", "infer.steps=8", "--set", "infer.azimuths=6", "--set", "infer.elevations=2",
            "--set", "infer.thetas=1"]
    base = ["--data", str(tiny_pipeline.data), "--split", "val", "--limit", "2", "--model", str(tiny_pipeline.model)]
    run_cli("infer", *base, "-o", str(tmp_path / "cal.h5"), *fast)
    run_cli("infer", *base, "-o", str(tmp_path / "raw.h5"), *fast, "--set", "infer.calibrated=false")
    offsets = load_model(tiny_pipeline.model).calibration["loss_offsets"]
    for name, shift in (("cal", offsets), ("raw", np.zeros(2))):
        art = read_artifact(tmp_path / f"{name}.h5", "predictions")
        L = art["category_losses"]
        assert [art["categories"][j] for j in (L - shift).argmin(1)] == list(art["category"])
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
