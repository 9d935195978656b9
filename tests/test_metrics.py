"""Metrics: pose error against hand-computed cases and scipy's logm, accuracies, mask IoU, grouping."""

import math

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.transform import Rotation

from ntdm_cli.metrics import (
    PI_6,
    PI_18,
    ImageResult,
    pose_rotation,
    accuracy_at,
    aggregate,
    class_confusion,
    classification_accuracy,
    mask_iou,
    median_error_deg,
    rotation_error,
    summarize,
    viewpoint_error,
    worst,
)

D = math.radians


def logm_error(r_pred, r_gt):
    """The paper's definition, literally: ‖logm(R_predᵀ R_gt)‖_F / √2."""
    log = scipy.linalg.logm(r_pred.T @ r_gt)
    return float(np.linalg.norm(np.real(log)) / math.sqrt(2))


# ------------------------------------------------------------------ rotation of a viewpoint


def test_pose_rotation_is_a_rotation_and_looks_at_the_object():
    rng = np.random.default_rng(0)
    a, e, t = rng.uniform(-math.pi, math.pi, 20), rng.uniform(-1.2, 1.2, 20), rng.uniform(-math.pi, math.pi, 20)
    R = pose_rotation(a, e, t)
    assert R.shape == (20, 3, 3)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    # DESIGN.md: C = d (cos e sin a, -cos e cos a, sin e); the camera looks down -z, so the world origin
    # (the object) lands at camera (0, 0, -d) whatever theta is.
    d = 5.0
    C = d * np.stack([np.cos(e) * np.sin(a), -np.cos(e) * np.cos(a), np.sin(e)], -1)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", R, -C), np.tile([0.0, 0.0, -d], (20, 1)), atol=1e-12)


def test_pose_rotation_hand_computed():
    # a = 0, e = 0: R_view = Rx(-π/2): world z (up) -> camera y, world -y (toward the camera at C = (0,-d,0)) -> +z
    R = pose_rotation(0.0, 0.0, 0.0)[0]
    np.testing.assert_allclose(R, [[1, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-15)
    # theta rotates in the image plane: Rz(theta) applied after R_view
    Rt = pose_rotation(0.0, 0.0, math.pi / 2)[0]
    np.testing.assert_allclose(Rt, np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]]) @ R, atol=1e-15)


def test_pose_rotation_matches_camera_module():
    camera = pytest.importorskip("ntdm_cli.render.camera")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    a, e, t = (rng.uniform(-3, 3, 16) for _ in range(3))
    theirs = camera.pose_rotation(torch.tensor(a), torch.tensor(e), torch.tensor(t))
    np.testing.assert_allclose(np.asarray(theirs.detach().cpu(), dtype=np.float64), pose_rotation(a, e, t), atol=1e-5)


# ------------------------------------------------------------------ pose error


def test_identity_is_zero():
    rng = np.random.default_rng(2)
    vp = np.stack([rng.uniform(-3, 3, 50), rng.uniform(-1.5, 1.5, 50), rng.uniform(-3, 3, 50)], -1)
    np.testing.assert_allclose(viewpoint_error(vp, vp), 0.0, atol=1e-7)
    np.testing.assert_allclose(rotation_error(np.eye(3), np.eye(3)), [0.0])


def test_180_degree_flips():
    for flip in (np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1])):
        np.testing.assert_allclose(rotation_error(flip, np.eye(3)), [math.pi], atol=1e-15)
    # theta off by π, azimuth off by π, elevation mirrored through the zenith (e -> π - e, a -> a + π, t -> t + π
    # is the same rotation: error 0)
    gt = np.array([D(40), D(20), D(10)])
    assert viewpoint_error(gt + [0, 0, math.pi], gt)[0] == pytest.approx(math.pi, abs=1e-12)
    assert viewpoint_error(gt + [math.pi, 0, 0], gt)[0] == pytest.approx(math.pi, abs=1e-12)
    same = np.array([gt[0] + math.pi, math.pi - gt[1], gt[2] + math.pi])
    assert viewpoint_error(same, gt)[0] == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("index,delta", [(0, 10.0), (0, 30.0), (1, 15.0), (2, 45.0), (0, -170.0)])
def test_known_single_angle_offsets(index, delta):
    """Changing one of azimuth / elevation / theta by δ rotates about one axis: the error is |δ|."""
    gt = np.array([D(120), D(10), D(-5)])
    pred = gt.copy()
    pred[index] += D(delta)
    assert math.degrees(viewpoint_error(pred, gt)[0]) == pytest.approx(abs(delta), abs=1e-9)


def test_azimuth_wraps_around():
    assert math.degrees(viewpoint_error([D(350), 0.1, 0.0], [D(10), 0.1, 0.0])[0]) == pytest.approx(20.0)
    assert math.degrees(viewpoint_error([D(725), 0.1, 0.0], [D(5), 0.1, 0.0])[0]) == pytest.approx(0.0, abs=1e-6)


def test_matches_logm_definition_and_arccos():
    rots = Rotation.random(200, random_state=3).as_matrix()
    gts = Rotation.random(200, random_state=4).as_matrix()
    ours = rotation_error(rots, gts)
    # the literal definition (scipy's logm is slow: a subset), and scipy's rotation-vector magnitude for all
    ref = np.array([logm_error(p, g) for p, g in zip(rots[:12], gts[:12])])
    np.testing.assert_allclose(ours[:12], ref, atol=1e-9)
    mag = Rotation.from_matrix(np.swapaxes(rots, 1, 2) @ gts).magnitude()
    np.testing.assert_allclose(ours, mag, atol=1e-9)
    tr = np.trace(np.swapaxes(rots, 1, 2) @ gts, axis1=1, axis2=2)
    np.testing.assert_allclose(ours, np.arccos(np.clip((tr - 1) / 2, -1, 1)), atol=1e-9)
    # precision at the ends, where arccos loses digits: tiny angles and angles close to π
    for angle in (1e-9, 1e-6, math.pi - 1e-6):
        R = Rotation.from_rotvec(angle * np.array([0.6, 0.0, 0.8])).as_matrix()
        assert rotation_error(R, np.eye(3))[0] == pytest.approx(angle, rel=1e-6, abs=1e-15)


def test_non_finite_predictions_are_pi():
    gt = np.tile([0.3, 0.2, 0.1], (4, 1))
    pred = np.array([[np.nan, 0.2, 0.1], [0.3, np.inf, 0.1], [0.3, 0.2, -np.inf], [0.3, 0.2, 0.1]])
    np.testing.assert_allclose(viewpoint_error(pred, gt), [math.pi, math.pi, math.pi, 0.0], atol=1e-7)
    R = np.eye(3)
    R[1, 2] = np.nan
    assert rotation_error(R, np.eye(3))[0] == math.pi
    with pytest.raises(ValueError, match="ground-truth"):
        viewpoint_error([0, 0, 0], [np.nan, 0, 0])


def test_torch_inputs_accepted():
    torch = pytest.importorskip("torch")
    e = viewpoint_error(torch.tensor([[0.5, 0.1, 0.0]]), torch.tensor([[0.5 + D(20), 0.1, 0.0]], dtype=torch.float32))
    assert math.degrees(e[0]) == pytest.approx(20.0, abs=1e-4)


# ------------------------------------------------------------------ accuracies


def test_accuracy_and_median():
    errors = np.array([0.0, D(9.9), D(10.1), D(29.9), D(30.1), math.pi, np.nan])
    assert accuracy_at(errors, PI_6) == pytest.approx(4 / 7)  # strictly below; NaN counts as wrong
    assert accuracy_at(errors, PI_18) == pytest.approx(2 / 7)
    assert median_error_deg(errors) == pytest.approx(29.9)
    assert median_error_deg([D(10), D(20)]) == pytest.approx(15.0)
    assert math.isnan(accuracy_at([], PI_6)) and math.isnan(median_error_deg([]))


def test_classification_accuracy():
    assert classification_accuracy(["car", "bus", "car"], ["car", "car", "car"]) == pytest.approx(2 / 3)
    assert math.isnan(classification_accuracy([], []))
    with pytest.raises(ValueError):
        classification_accuracy(["car"], [])


# ------------------------------------------------------------------ IoU


def test_mask_iou_hand_computed():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0:2, 0:2] = True  # 4 px
    b[1:3, 1:3] = True  # 4 px, overlap 1 px
    assert mask_iou(a, b) == pytest.approx(1 / 7)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a.astype(np.uint8) * 255, b) == pytest.approx(1 / 7)


def test_mask_iou_edge_cases():
    empty = np.zeros((3, 5), bool)
    full = np.ones((3, 5), bool)
    assert mask_iou(empty, empty) == 1.0  # both empty: exact agreement
    assert mask_iou(empty, full) == 0.0 and mask_iou(full, empty) == 0.0
    assert math.isnan(mask_iou(None, full)) and math.isnan(mask_iou(full, None))
    with pytest.raises(ValueError, match="shape"):
        mask_iou(np.zeros((3, 4), bool), empty)


# ------------------------------------------------------------------ grouping


def _r(i, cat, pred_cat, level, nuisance, err_deg, iou=float("nan"), vis=float("nan")):
    return ImageResult(f"img{i}", cat, pred_cat, level, nuisance, D(err_deg), iou, vis)


def test_summarize_and_aggregate():
    results = [
        _r(0, "car", "car", 0, "", 5, 0.9, 0.9),
        _r(1, "car", "bus", 0, "", 20, 0.5, 0.4),
        _r(2, "car", "car", 2, "", 50, 0.7, 0.3),
        _r(3, "bus", "bus", 0, "", 180, 0.1, 0.1),  # a non-finite prediction scores π
        _r(4, "bus", "bus", 0, "weather", 8),
        _r(5, "car", "car", 0, "shape", 35),
    ]
    s = summarize(results)
    assert s["n"] == 6 and s["n_non_finite"] == 1
    assert s["acc_pi_6"] == pytest.approx(3 / 6) and s["acc_pi_18"] == pytest.approx(2 / 6)
    assert s["median_error_deg"] == pytest.approx(27.5)
    assert s["amodal_iou"] == pytest.approx((0.9 + 0.5 + 0.7 + 0.1) / 4) and s["n_amodal"] == 4
    assert s["class_acc"] == pytest.approx(5 / 6)
    agg = aggregate(results)
    assert set(agg) == {"all", "by_category", "category_mean", "by_occlusion", "by_nuisance", "ood_mean",
                        "class_confusion"}
    # i.i.d.: car → car, bus, car; bus → bus. OOD: bus → bus, car → car
    assert agg["class_confusion"]["iid"] == {"categories": ["bus", "car"], "counts": [[1, 0], [1, 2]]}
    assert agg["class_confusion"]["ood"] == {"categories": ["bus", "car"], "counts": [[1, 0], [0, 1]]}
    assert class_confusion([_r(0, "car", "sofa", 0, "", 1)]) == {"categories": ["car", "sofa"],
                                                                 "counts": [[0, 1], [0, 0]]}
    assert list(agg["by_category"]) == ["bus", "car"]
    assert agg["by_category"]["bus"]["acc_pi_6"] == pytest.approx(1 / 2)
    assert agg["by_category"]["car"]["acc_pi_6"] == pytest.approx(2 / 4)
    assert agg["category_mean"]["acc_pi_6"] == pytest.approx(0.5)
    assert agg["category_mean"]["class_acc"] == pytest.approx((1.0 + 3 / 4) / 2)
    # occlusion levels only over i.i.d. images
    assert list(agg["by_occlusion"]) == ["L0", "L2"]
    assert agg["by_occlusion"]["L0"]["n"] == 3 and agg["by_occlusion"]["L2"]["acc_pi_6"] == 0.0
    assert list(agg["by_nuisance"]) == ["shape", "weather"]
    assert agg["ood_mean"]["n"] == 2 and agg["ood_mean"]["acc_pi_6"] == pytest.approx(0.5)
    assert math.isnan(agg["ood_mean"]["amodal_iou"]) and agg["ood_mean"]["n_amodal"] == 0
    assert [w.image_id for w in worst(results, 2)] == ["img3", "img2"]


def test_aggregate_empty():
    agg = aggregate([])
    assert agg["all"]["n"] == 0 and math.isnan(agg["all"]["acc_pi_6"])
    assert agg["by_category"] == {} and agg["category_mean"] is None and agg["ood_mean"] is None
    assert agg["class_confusion"]["iid"] == {"categories": [], "counts": []}


def test_symmetric_error_is_the_minimum_over_rotations_about_the_vertical_axis():
    from ntdm_cli.metrics import _rz, symmetric_rotation_error

    rng = np.random.default_rng(0)
    a, b = rng.uniform(-3, 3, (20, 3)), rng.uniform(-3, 3, (20, 3))
    rp, rg = pose_rotation(*a.T), pose_rotation(*b.T)
    sym = symmetric_rotation_error(rp, rg)
    phis = np.linspace(0, 2 * np.pi, 7201)
    brute = np.array([rotation_error(rp[i] @ _rz(phis), rg[i]).min() for i in range(20)])
    np.testing.assert_allclose(sym, brute, atol=1e-3)  # the grid is 0.05° fine
    assert (sym <= rotation_error(rp, rg) + 1e-12).all()


def test_symmetric_viewpoint_error_ignores_azimuth_only():
    gt = [D(40), D(20), D(5)]
    assert viewpoint_error([D(40 + 137), D(20), D(5)], gt, symmetric=True)[0] == pytest.approx(0, abs=1e-7)
    assert viewpoint_error([D(40 + 137), D(20), D(5)], gt)[0] == pytest.approx(D(137))
    assert viewpoint_error([D(300), D(32), D(5)], gt, symmetric=True)[0] == pytest.approx(D(12))  # elevation stays
    assert viewpoint_error([np.nan, D(20), D(5)], gt, symmetric=True)[0] == pytest.approx(math.pi)


def test_rotational_symmetry_of_cads():
    from ntdm_cli.data.cads import box, build_cad, cylinder, lathe
    from ntdm_cli.geometry.symmetry import is_rotationally_symmetric

    v, f = lathe([(0.1, 0.0), (0.15, 0.3), (0.05, 0.6)], 20)
    assert is_rotationally_symmetric(v, f)
    hv, hf = box((0.2, 0.0, 0.3), (0.05, 0.03, 0.2))  # a handle breaks it
    assert not is_rotationally_symmetric(np.concatenate([v, hv]), np.concatenate([f, hf + len(v)]))
    assert not is_rotationally_symmetric(*box((0, 0, 0), (1.0, 0.5, 0.4)))
    v, f = cylinder((0, 0, 0), (0, 0, 1.0), 0.3, 16)
    assert is_rotationally_symmetric(v, f)
    # the procedural bottles: lathe-turned ones are, the jug (handle), the flask (flat, 4 sides) and the soda
    # bottle (its label stands off the waisted body) are not
    names = {build_cad("bottle", k).name: is_rotationally_symmetric(*build_cad("bottle", k).mesh()[:2]) for k in range(7)}
    assert names == {"wine": True, "water": True, "beer": True, "jug": False, "flask": False, "soda": False, "vase": True}
    assert not any(is_rotationally_symmetric(*build_cad(c, 0).mesh()[:2]) for c in ("car", "bus", "chair"))
