"""Evaluation metrics of the NTDM paper (sec. 4): pose error, accuracies, mask IoU, classification.

Everything here is plain numpy in float64 (evaluation is cheap; exactness matters more than speed).
Torch tensors are accepted wherever an array is (they are moved to CPU numpy first).

Pose error (docs/design.md, "Pose error"): the rotation of a viewpoint is
``R = Rz(theta) · R_view(azimuth, elevation)`` with ``R_view = Rx(e') · Rz(a')``, ``a' = -a`` and
``e' = -(π/2 - e)`` (PASCAL3D+ / NeMo convention) and the error between two rotations is

    Δ(R_pred, R_gt) = ‖logm(R_predᵀ R_gt)‖_F / √2,

the angle of the relative rotation, in [0, π]. It is computed in closed form from
``cos Δ = (tr(M) - 1) / 2`` and ``sin Δ = ‖vee(M - Mᵀ)‖ / 2`` with ``Δ = atan2(sin Δ, cos Δ)``: this is
exactly ``arccos(clamp((tr(M) - 1) / 2, -1, 1))`` for rotation matrices, but keeps full precision near
0 and near π, where arccos loses half of the digits. A prediction with any non-finite value (angle
or matrix entry) has error π, the largest possible.

Accuracy at a threshold counts errors strictly below it (``error < π/6``), as NeMo/StarMap do.

Mask IoU conventions (documented because the edge cases decide numbers at heavy occlusion):

* prediction and ground truth both empty → IoU 1 (they agree exactly: nothing of the object);
* exactly one of them empty → IoU 0;
* a missing mask (``None``: not annotated / not predicted) → NaN, left out of means and counted apart;
* masks of different shapes → ``ValueError`` (they belong to different images or resolutions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

#: The two pose-accuracy thresholds of the paper, radians.
PI_6 = math.pi / 6
PI_18 = math.pi / 18


def _np(x: Any, dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _rz(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    z, o = np.zeros_like(t), np.ones_like(t)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _rx(t: np.ndarray) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    z, o = np.zeros_like(t), np.ones_like(t)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def pose_rotation(azimuth: Any, elevation: Any, theta: Any) -> np.ndarray:
    """Rotation of a PASCAL3D+ viewpoint, following docs/design.md exactly.

    azimuth, elevation, theta: (N,) radians (scalars broadcast) -> R: (N,3,3) float64,
    ``R = Rz(theta) · Rx(-(π/2 - elevation)) · Rz(-azimuth)`` (world → camera rotation).
    The renderer's :func:`ntdm_cli.render.camera.pose_rotation` is the torch form; the metric keeps
    its own float64 numpy form so that evaluation does not depend on the renderer and the test suite
    can cross-check the two."""
    a, e, t = np.broadcast_arrays(_np(azimuth).reshape(-1), _np(elevation).reshape(-1), _np(theta).reshape(-1))
    r_view = _rx(-(math.pi / 2 - e)) @ _rz(-a)
    return _rz(t) @ r_view


def rotation_error(r_pred: Any, r_gt: Any) -> np.ndarray:
    """Angle of the relative rotation ``R_predᵀ R_gt``, i.e. ‖logm(R_predᵀ R_gt)‖_F / √2.

    r_pred, r_gt: (N,3,3) or (3,3) rotation matrices -> (N,) float64 radians in [0, π].
    Predictions with any non-finite entry get π. A non-finite ground truth raises ``ValueError``
    (bad annotation, not a bad prediction)."""
    rp = _np(r_pred).reshape(-1, 3, 3)
    rg = _np(r_gt).reshape(-1, 3, 3)
    if rp.shape[0] != rg.shape[0]:
        if rg.shape[0] == 1:
            rg = np.broadcast_to(rg, rp.shape)
        elif rp.shape[0] == 1:
            rp = np.broadcast_to(rp, rg.shape)
        else:
            raise ValueError(f"rotation_error: {rp.shape[0]} predicted vs {rg.shape[0]} ground-truth rotations")
    if not np.isfinite(rg).all():
        raise ValueError("rotation_error: the ground-truth rotation has non-finite entries")
    bad = ~np.isfinite(rp).all(axis=(1, 2))
    rp = np.where(bad[:, None, None], np.eye(3), rp)
    m = np.swapaxes(rp, 1, 2) @ rg
    cos = (np.trace(m, axis1=1, axis2=2) - 1.0) / 2.0
    vee = np.stack([m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1)
    sin = np.linalg.norm(vee, axis=-1) / 2.0
    err = np.arctan2(sin, cos)
    err[bad] = math.pi
    return err


def symmetric_rotation_error(r_pred: Any, r_gt: Any) -> np.ndarray:
    """Pose error of an object that is rotationally symmetric about its vertical (z) axis:
    min over φ of the angle of ``(R_pred·Rz(φ))ᵀ R_gt`` (rotating such an object about its axis changes
    nothing in the image, so its azimuth is not observable).

    r_pred, r_gt: (N,3,3) or (3,3) -> (N,) float64 radians in [0, π]; non-finite predictions get π.
    The optimum is closed form: with A = R_predᵀ R_gt, tr(Rz(-φ)·A) is largest at
    φ* = atan2(A10 - A01, A00 + A11); the angle is then computed by :func:`rotation_error`."""
    rp = _np(r_pred).reshape(-1, 3, 3)
    rg = _np(r_gt).reshape(-1, 3, 3)
    bad = ~np.isfinite(rp).all(axis=(1, 2))
    safe = np.where(bad[:, None, None], np.eye(3), rp)
    a = np.swapaxes(safe, 1, 2) @ rg
    phi = np.arctan2(a[:, 1, 0] - a[:, 0, 1], a[:, 0, 0] + a[:, 1, 1])
    err = rotation_error(safe @ _rz(phi), rg)
    err[bad] = math.pi
    return err


def viewpoint_error(pred: Any, gt: Any, symmetric: bool = False) -> np.ndarray:
    """Pose error between viewpoints given as angles.

    pred, gt: (N,3) or (3,) arrays of (azimuth, elevation, theta), radians -> (N,) radians in [0, π].
    A prediction with a non-finite angle gets π; a non-finite ground truth raises ``ValueError``.
    ``symmetric``: the object is rotationally symmetric about its vertical axis
    (:func:`symmetric_rotation_error`)."""
    p = _np(pred).reshape(-1, 3)
    g = _np(gt).reshape(-1, 3)
    if not np.isfinite(g).all():
        raise ValueError("viewpoint_error: the ground-truth viewpoint has non-finite angles")
    bad = ~np.isfinite(p).all(axis=1)
    p = np.where(bad[:, None], 0.0, p)
    error = symmetric_rotation_error if symmetric else rotation_error
    err = error(pose_rotation(p[:, 0], p[:, 1], p[:, 2]), pose_rotation(g[:, 0], g[:, 1], g[:, 2]))
    err[bad] = math.pi
    return err


def accuracy_at(errors: Any, threshold: float) -> float:
    """Fraction of ``errors`` (N,) radians strictly below ``threshold``; NaN for N = 0."""
    e = _np(errors).reshape(-1)
    if e.size == 0:
        return float("nan")
    e = np.where(np.isfinite(e), e, math.pi)
    return float(np.mean(e < threshold))


def median_error_deg(errors: Any) -> float:
    """Median of ``errors`` (N,) radians, in degrees (non-finite counted as 180°); NaN for N = 0."""
    e = _np(errors).reshape(-1)
    if e.size == 0:
        return float("nan")
    e = np.where(np.isfinite(e), e, math.pi)
    return float(np.degrees(np.median(e)))


def mask_iou(pred: Any, gt: Any) -> float:
    """Intersection over union of two boolean masks (H,W) -> float in [0, 1].

    Both empty → 1.0; one empty → 0.0; either ``None`` → NaN (not available); different shapes →
    ``ValueError``. Non-boolean masks are thresholded at > 0 (after ``np.asarray``)."""
    if pred is None or gt is None:
        return float("nan")
    p = _np(pred, dtype=np.float64) > 0
    g = _np(gt, dtype=np.float64) > 0
    if p.shape != g.shape:
        raise ValueError(f"mask_iou: predicted mask {p.shape} and ground-truth mask {g.shape} differ in shape")
    union = np.count_nonzero(p | g)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(p & g) / union)


def classification_accuracy(pred_labels: Sequence[str], gt_labels: Sequence[str]) -> float:
    """Top-1 accuracy: fraction of equal labels; NaN for no labels."""
    if len(pred_labels) != len(gt_labels):
        raise ValueError(f"classification_accuracy: {len(pred_labels)} predictions vs {len(gt_labels)} labels")
    if len(gt_labels) == 0:
        return float("nan")
    return float(np.mean([str(p) == str(g) for p, g in zip(pred_labels, gt_labels)]))


def _nanmean(x: np.ndarray) -> tuple[float, int]:
    x = x[np.isfinite(x)]
    return (float(x.mean()) if x.size else float("nan")), int(x.size)


# ------------------------------------------------------------------------------------------------
# Per-image rows and their aggregation (the layout of the paper's tables 1 and 2)


@dataclass
class ImageResult:
    """Metrics of one evaluated image."""

    image_id: str
    category: str  # ground-truth class
    pred_category: str
    occlusion_level: int  # 0..3 (L0 = unoccluded PASCAL3D+)
    nuisance: str  # "" for i.i.d. images, else the OOD-CV nuisance (shape, pose, texture, ...)
    pose_error: float  # radians, π for non-finite predictions
    amodal_iou: float  # NaN when a mask is missing
    visible_iou: float  # NaN when a mask is missing
    pose_error_sym: float | None = None  # radians, symmetry-aware error; None: the CAD is not symmetric
    pose_error_true_class: float = float("nan")  # radians, pose solved for the annotated class; NaN: not solved
    # loss of the answer and of the annotation (annotated class, pose and shape) under the model; NaN: unknown
    loss: float = float("nan")
    annotated_loss: float = float("nan")
    # the annotation's loss after the solver's optimisation started there (shape and scale free, as the
    # answer's were); NaN: not computed (predictions written before it existed)
    annotated_refined_loss: float = float("nan")

    @property
    def search_failure(self) -> bool | None:
        """For a wrong pose: started at the annotation, the optimiser ends with a lower loss than the
        answer, so the search missed a better optimum (True), or the model prefers the wrong answer
        (False, a model failure); None when the losses are unknown. Falls back to the annotation's own
        loss when the refined one was not computed."""
        ref = self.annotated_refined_loss if math.isfinite(self.annotated_refined_loss) else self.annotated_loss
        if not (math.isfinite(self.loss) and math.isfinite(ref)):
            return None
        return ref < self.loss

    @property
    def correct_class(self) -> bool:
        return self.pred_category == self.category

    @property
    def symmetric(self) -> bool:
        """The CAD is rotationally symmetric about its vertical axis."""
        return self.pose_error_sym is not None

    @property
    def sym_error(self) -> float:
        """Pose error with rotational symmetry taken into account (= ``pose_error`` for other CADs)."""
        return self.pose_error if self.pose_error_sym is None else self.pose_error_sym


#: Keys of one metrics summary (``summarize``), in display order.
METRIC_KEYS = ("n", "acc_pi_6", "acc_pi_18", "median_error_deg", "mean_error_deg", "n_non_finite",
               "amodal_iou", "n_amodal", "visible_iou", "n_visible", "class_acc", "n_symmetric", "acc_pi_6_sym",
               "acc_pi_18_sym", "median_error_sym_deg", "n_true_class", "acc_pi_6_true_class",
               "acc_pi_18_true_class", "n_wrong", "n_search_failures", "n_model_failures", "n_flips")

#: Pose errors above this are counted as near-180° flips (front/back or left/right confusions).
FLIP_THRESHOLD = 5 * math.pi / 6


def summarize(results: Sequence[ImageResult]) -> dict[str, float | int]:
    """Metrics of a group of images.

    Returns ``n``, ``acc_pi_6``, ``acc_pi_18`` (fractions), ``median_error_deg``, ``mean_error_deg``,
    ``n_non_finite`` (predictions scored π because they were not finite: counted as ≥ π - 1e-12),
    ``amodal_iou``/``visible_iou`` (means over images with both masks; NaN if none) with their counts
    ``n_amodal``/``n_visible``, ``class_acc`` (fraction), and ``n_symmetric`` (images of rotationally
    symmetric CADs) with ``acc_pi_6_sym``, ``acc_pi_18_sym``, ``median_error_sym_deg``: the same pose
    metrics with the symmetry-aware error for those images, and ``n_true_class`` (images whose
    annotated class was solved) with ``acc_pi_6_true_class``, ``acc_pi_18_true_class``: the accuracy
    of the pose solved for the annotated class (pose given the class, NeMo's protocol; the plain
    columns score the predicted class's pose). Of the ``n_wrong`` images with error ≥ π/6,
    ``n_search_failures`` / ``n_model_failures`` count those whose annotation scores better / not
    better than the answer (images without the two losses are in neither), and ``n_flips`` those with
    error above 150° (:data:`FLIP_THRESHOLD`). Fractions are NaN for an empty group."""
    err = np.array([r.pose_error for r in results], dtype=np.float64)
    sym = np.array([r.sym_error for r in results], dtype=np.float64)
    amodal, n_amodal = _nanmean(np.array([r.amodal_iou for r in results], dtype=np.float64))
    visible, n_visible = _nanmean(np.array([r.visible_iou for r in results], dtype=np.float64))
    given = np.array([r.pose_error_true_class for r in results], dtype=np.float64)
    given = given[~np.isnan(given)]
    return {
        "n": len(results),
        "acc_pi_6": accuracy_at(err, PI_6),
        "acc_pi_18": accuracy_at(err, PI_18),
        "median_error_deg": median_error_deg(err),
        "mean_error_deg": float(np.degrees(err.mean())) if err.size else float("nan"),
        "n_non_finite": int(np.count_nonzero(err >= math.pi - 1e-12)),
        "amodal_iou": amodal,
        "n_amodal": n_amodal,
        "visible_iou": visible,
        "n_visible": n_visible,
        "class_acc": classification_accuracy([r.pred_category for r in results], [r.category for r in results]),
        "n_symmetric": int(sum(r.symmetric for r in results)),
        "acc_pi_6_sym": accuracy_at(sym, PI_6),
        "acc_pi_18_sym": accuracy_at(sym, PI_18),
        "median_error_sym_deg": median_error_deg(sym),
        "n_true_class": int(given.size),
        "acc_pi_6_true_class": accuracy_at(given, PI_6),
        "acc_pi_18_true_class": accuracy_at(given, PI_18),
        "n_wrong": int(sum(r.pose_error >= PI_6 for r in results)),
        "n_search_failures": int(sum(r.pose_error >= PI_6 and r.search_failure is True for r in results)),
        "n_model_failures": int(sum(r.pose_error >= PI_6 and r.search_failure is False for r in results)),
        "n_flips": int(sum(r.pose_error > FLIP_THRESHOLD for r in results)),
    }


def occlusion_key(level: int) -> str:
    return f"L{int(level)}"


def aggregate(results: Sequence[ImageResult]) -> dict[str, Any]:
    """Group metrics as in the paper's tables.

    Returns a dict with
    ``all`` (every image, micro average), ``by_category`` (ground-truth class → summary),
    ``category_mean`` (macro average: the unweighted mean of each metric over categories),
    ``by_occlusion`` (``"L0"``..``"L3"`` → summary over i.i.d. images, i.e. nuisance ``""``: table 1),
    ``by_nuisance`` (OOD nuisance → summary: table 2) and ``ood_mean`` (all OOD images together: the
    "mean" column of table 2, which in the paper is image-weighted) and ``class_confusion``
    (``iid`` and ``ood``: :func:`class_confusion` of those images). Empty groups are omitted."""
    out: dict[str, Any] = {"all": summarize(results)}
    cats = sorted({r.category for r in results})
    out["by_category"] = {c: summarize([r for r in results if r.category == c]) for c in cats}
    out["category_mean"] = _macro(list(out["by_category"].values()))
    iid = [r for r in results if not r.nuisance]
    levels = sorted({int(r.occlusion_level) for r in iid})
    out["by_occlusion"] = {occlusion_key(lv): summarize([r for r in iid if int(r.occlusion_level) == lv])
                           for lv in levels}
    ood = [r for r in results if r.nuisance]
    nuis = sorted({r.nuisance for r in ood})
    out["by_nuisance"] = {n: summarize([r for r in ood if r.nuisance == n]) for n in nuis}
    out["ood_mean"] = summarize(ood) if ood else None
    out["class_confusion"] = {"iid": class_confusion(iid), "ood": class_confusion(ood)}
    return out


def class_confusion(results: Sequence[ImageResult]) -> dict[str, Any]:
    """Confusion of the predicted classes: ``categories`` (every annotated or predicted name, sorted)
    and ``counts`` (K, K) int, rows = annotated category, columns = predicted category."""
    names = sorted({r.category for r in results} | {r.pred_category for r in results})
    pos = {c: i for i, c in enumerate(names)}
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    for r in results:
        counts[pos[r.category], pos[r.pred_category]] += 1
    return {"categories": names, "counts": counts.tolist()}


def _macro(summaries: list[Mapping[str, Any]]) -> dict[str, float | int] | None:
    if not summaries:
        return None
    out: dict[str, float | int] = {"n": int(sum(s["n"] for s in summaries)), "n_groups": len(summaries)}
    out["n_symmetric"] = int(sum(s.get("n_symmetric", 0) for s in summaries))
    out["n_true_class"] = int(sum(s.get("n_true_class", 0) for s in summaries))
    for key in ("n_wrong", "n_search_failures", "n_model_failures", "n_flips"):
        out[key] = int(sum(s.get(key, 0) for s in summaries))
    for key in ("acc_pi_6", "acc_pi_18", "median_error_deg", "mean_error_deg", "amodal_iou", "visible_iou",
                "class_acc", "acc_pi_6_sym", "acc_pi_18_sym", "median_error_sym_deg", "acc_pi_6_true_class",
                "acc_pi_18_true_class"):
        vals = np.array([s[key] for s in summaries], dtype=np.float64)
        out[key] = _nanmean(vals)[0]
    return out


def worst(results: Iterable[ImageResult], k: int) -> list[ImageResult]:
    """The ``k`` images with the largest pose error (ties broken by lower amodal IoU, then id)."""
    def key(r: ImageResult):
        iou = r.amodal_iou if math.isfinite(r.amodal_iou) else 2.0
        return (-r.pose_error, iou, r.image_id)

    return sorted(results, key=key)[: max(0, int(k))]
