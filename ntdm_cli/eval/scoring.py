"""Scoring for ``ntdm eval``: match predictions to annotations by ``image_id`` and compute each image's
pose error, mask IoUs and class; keep the worst cases of each run.

Pose errors in radians; IoUs as fractions. Predicted images without annotation and annotated images
without prediction are counted, listed and left out of the metrics (``strict=True``: an error)."""

from __future__ import annotations

import heapq
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ntdm_cli.console import track, warn
from ntdm_cli.errors import NtdmError, NtdmUsageError
from ntdm_cli.eval.ground_truth import GroundTruth, load_ground_truth
from ntdm_cli.eval.reading import Predictions
from ntdm_cli.geometry.symmetry import cad_is_rotationally_symmetric
from ntdm_cli.eval.reading import ROTATION_TOLERANCE
from ntdm_cli.metrics import ImageResult, aggregate, mask_iou, pose_rotation, rotation_error, viewpoint_error



@dataclass
class WorstCase:
    """A candidate overlay: the result plus the pixels needed to draw it."""

    result: ImageResult
    image: np.ndarray | None
    gt_mask: np.ndarray | None
    pred_mask: np.ndarray | None


@dataclass
class RunResult:
    """Scores of one predictions file."""

    predictions: Predictions
    results: list[ImageResult] = field(default_factory=list)
    annotated: set[str] = field(default_factory=set)
    predicted_not_annotated: list[str] = field(default_factory=list)
    annotated_not_predicted: list[str] = field(default_factory=list)
    rotation_disagreements: int = 0
    max_rotation_disagreement: float = 0.0
    level_disagreements: int = 0
    worst: list[WorstCase] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    _heap: list = field(default_factory=list)
    _counter: Any = field(default_factory=itertools.count)

    @property
    def label(self) -> str:
        return self.predictions.label


GroundTruthLoader = Callable[..., Iterable[GroundTruth]]


def _selection(preds: Predictions) -> tuple[set[int], set[str]]:
    levels = {int(lv) for lv, nu in zip(preds.occlusion_level, preds.nuisance) if not nu}
    nuisances = {nu for nu in preds.nuisance if nu}
    return levels, nuisances


def _in_selection(gt: GroundTruth, preds: Predictions, levels: set[int], nuisances: set[str]) -> bool:
    if preds.categories and gt.category not in preds.categories:
        return False
    if gt.nuisance:
        return gt.nuisance in nuisances
    return int(gt.occlusion_level) in levels


def _symmetric_cad(data_root: Path, gt: GroundTruth) -> bool:
    """Whether the annotated CAD (``CAD/<category>/NN.off``) is rotationally symmetric about its
    vertical axis; False when the image names no CAD or the file is missing or unreadable."""
    if gt.cad_index is None:
        return False
    path = data_root / "CAD" / gt.category / f"{gt.cad_index + 1:02d}.off"
    return path.is_file() and bool(cad_is_rotationally_symmetric(str(path)))


def _score(run: RunResult, gt: GroundTruth, data_root: Path, k_worst: int) -> None:
    preds = run.predictions
    i = preds.index[gt.image_id]
    gt_angles = np.array([gt.azimuth, gt.elevation, gt.theta], dtype=np.float64)
    if not np.isfinite(gt_angles).all():
        raise NtdmError(f"{data_root}: annotation of image {gt.image_id!r} has a non-finite viewpoint")
    err = float(viewpoint_error(preds.angles[i], gt_angles)[0])
    err_sym = float(viewpoint_error(preds.angles[i], gt_angles, symmetric=True)[0]) \
        if _symmetric_cad(data_root, gt) else None
    err_true = float("nan")  # the pose solved for the annotated class, when it was solved
    if preds.category_angles is not None and gt.category in preds.categories:
        a = preds.category_angles[i, preds.categories.index(gt.category)]
        if not np.isnan(a).all():
            err_true = float(viewpoint_error(a, gt_angles)[0])
    if preds.rotation is not None and np.isfinite(preds.angles[i]).all() and np.isfinite(preds.rotation[i]).all():
        d = float(rotation_error(preds.rotation[i], pose_rotation(*preds.angles[i]))[0])
        if d > ROTATION_TOLERANCE:
            run.rotation_disagreements += 1
            run.max_rotation_disagreement = max(run.max_rotation_disagreement, d)
    if int(preds.occlusion_level[i]) != int(gt.occlusion_level) or preds.nuisance[i] != gt.nuisance:
        run.level_disagreements += 1
    ious = {}
    masks = {}
    for which, gt_mask in (("amodal", gt.amodal_mask), ("visible", gt.visible_mask)):
        pred_mask = preds.mask(gt.image_id, which)
        masks[which] = pred_mask
        try:
            ious[which] = mask_iou(pred_mask, gt_mask)
        except ValueError:
            raise NtdmError(
                f"{preds.path}: {which} mask of image {gt.image_id!r} is {np.shape(pred_mask)}, "
                f"the annotation is {np.shape(gt_mask)}"
            )
    result = ImageResult(
        image_id=gt.image_id, category=gt.category, pred_category=preds.category[i],
        occlusion_level=int(gt.occlusion_level), nuisance=gt.nuisance, pose_error=err,
        amodal_iou=ious["amodal"], visible_iou=ious["visible"], pose_error_sym=err_sym,
        pose_error_true_class=err_true,
        loss=float(preds.loss[i]) if preds.loss is not None else float("nan"),
        annotated_loss=float(preds.annotated_loss[i]) if preds.annotated_loss is not None else float("nan"),
        annotated_refined_loss=(float(preds.annotated_refined_loss[i]) if preds.annotated_refined_loss is not None
                                else float("nan")),
    )
    run.results.append(result)
    if k_worst > 0:
        iou = result.amodal_iou if math.isfinite(result.amodal_iou) else 2.0
        item = ((err, -iou), next(run._counter), WorstCase(result, gt.image, gt.amodal_mask, masks["amodal"]))
        if len(run._heap) < k_worst:
            heapq.heappush(run._heap, item)
        elif item[0] > run._heap[0][0]:
            heapq.heapreplace(run._heap, item)


def evaluate(
    predictions: Sequence[Predictions],
    data_root: str | os.PathLike,
    *,
    split: str | None = None,
    overlays: int = 4,
    ground_truth: GroundTruthLoader | None = None,
    strict: bool = False,
    listed_ids: int = 5,
) -> list[RunResult]:
    """Score every predictions file against the annotations under ``data_root``.

    Runs are grouped by split (``split`` overrides the artifacts' ``split`` attribute); the ground
    truth of each split is streamed once through ``ground_truth(data_root, split, image_ids,
    categories=..., occlusion_levels=..., nuisances=...)``. An annotated image belongs to a run when
    its category is one of the run's candidate categories and its occlusion level / nuisance occurs
    in the run's predictions. ``ground_truth`` defaults to :func:`load_ground_truth` (looked up at call
    time). Returns one :class:`RunResult` per run, in input order."""
    ground_truth = ground_truth or globals()["load_ground_truth"]
    root = Path(data_root)
    runs = [RunResult(p) for p in predictions]
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        s = split or run.predictions.split
        if s is None:
            raise NtdmUsageError(f"{run.predictions.path}: no 'split' attribute; pass --split")
        groups.setdefault(s, []).append(run)
    for s, group in groups.items():
        selections = {id(r): _selection(r.predictions) for r in group}
        ids: set[str] = set().union(*(r.predictions.index for r in group))
        categories = sorted(set().union(*(set(r.predictions.categories or r.predictions.category) for r in group)))
        levels = sorted(set().union(*(selections[id(r)][0] for r in group)))
        nuisances = sorted(set().union(*(selections[id(r)][1] for r in group)))
        seen: set[str] = set()
        records = ground_truth(root, s, ids, categories=categories, occlusion_levels=levels, nuisances=nuisances)
        for gt in track(records, f"eval {s}", total=None):
            if gt.image_id in seen:
                raise NtdmError(f"{root}: image_id {gt.image_id!r} is annotated more than once in split {s!r}")
            seen.add(gt.image_id)
            for run in group:
                preds = run.predictions
                if gt.image_id not in preds.index and not _in_selection(gt, preds, *selections[id(run)]):
                    continue
                run.annotated.add(gt.image_id)
                if gt.image_id in preds.index:
                    _score(run, gt, root, overlays)
    for run in runs:
        preds = run.predictions
        run.predicted_not_annotated = [i for i in preds.image_ids if i not in run.annotated]
        run.annotated_not_predicted = sorted(run.annotated - set(preds.index))
        run.worst = [w for _, _, w in sorted(run._heap, key=lambda t: (t[0], -t[1]), reverse=True)]
        run._heap = []
        run.summary = aggregate(run.results)
        for what, missing in (("predicted images have no annotation", run.predicted_not_annotated),
                              ("annotated images have no prediction", run.annotated_not_predicted)):
            if missing:
                msg = f"{run.label}: {len(missing)} {what} (first: {', '.join(missing[:listed_ids])})"
                if strict:
                    raise NtdmError(f"{preds.path}: {msg}")
                warn(msg)
        if run.rotation_disagreements:
            warn(f"{run.label}: the stored 'rotation' disagrees with the stored angles for "
                 f"{run.rotation_disagreements} images (up to {math.degrees(run.max_rotation_disagreement):.2f}°); "
                 "errors are computed from the angles")
        if run.level_disagreements:
            warn(f"{run.label}: occlusion level / nuisance of {run.level_disagreements} predictions differ from "
                 "the annotation; the annotation is used")
        if not run.results:
            warn(f"{run.label}: no predicted image has an annotation; nothing to score")
    if not same_image_sets(runs):
        warn("the runs were scored on different image sets (" + ", ".join(f"{r.label}: {len(r.results)}" for r in runs)
             + " images); compare them with care")
    return runs


def same_image_sets(runs: Sequence[RunResult]) -> bool:
    """Whether every run scored exactly the same images (a fair side-by-side comparison)."""
    sets = {frozenset(x.image_id for x in r.results) for r in runs}
    return len(sets) <= 1

