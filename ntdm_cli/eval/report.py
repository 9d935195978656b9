"""``ntdm eval``: score predictions artifacts against annotations and write a report.

Library entry points:

* :func:`load_predictions` — read a ``predictions`` artifact (checked kind, consistent lengths);
* :func:`evaluate` — stream the ground truth once per split, score every run (one predictions file
  each), keep the worst cases, and report mismatched image sets;
* :func:`write_report` — ``report.json``, ``report.md``, ``per_image.csv``,
  ``accuracy_vs_occlusion.png``, ``error_histogram.png`` and ``overlays/*.png``;
* :func:`run_eval` — both, as the CLI calls it.

Conventions: pose errors in radians (degrees where the key says ``_deg``), accuracies and IoUs as
fractions in JSON and as percentages in the Markdown/console tables (like the paper's tables).
Images are matched by ``image_id``. Predicted images without annotation and annotated images without
prediction are reported (count and first ids) and left out of the metrics; ``strict=True`` turns any
such mismatch into an error.
"""

from __future__ import annotations

import csv
import heapq
import io
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ntdm_cli import __version__
from ntdm_cli.artifacts import LazyArtifact, command_line, open_artifact
from ntdm_cli.conventions import ANGLE_KEYS, mask_key
from ntdm_cli.config import section
from ntdm_cli.console import track, warn
from ntdm_cli.fsutil import atomic_write, make_output_folder
from ntdm_cli.errors import NtdmError, NtdmUsageError
from ntdm_cli.eval.ground_truth import GroundTruth, load_ground_truth
from ntdm_cli.geometry.symmetry import cad_is_rotationally_symmetric
from ntdm_cli.metrics import (
    PI_6,
    PI_18,
    ImageResult,
    pose_rotation,
    aggregate,
    mask_iou,
    rotation_error,
    viewpoint_error,
)

#: Stored rotations that disagree with the stored angles by more than this (radians) are reported.
ROTATION_TOLERANCE = 1e-3


@section("eval")
@dataclass
class EvalConfig:
    """``ntdm eval`` settings (``--set eval.key=value``)."""

    overlays: int = 4  # worst cases (largest pose error) drawn per predictions file
    listed_ids: int = 5  # ids listed per kind of mismatch
    histogram_bin_deg: float = 5.0  # width of the error-histogram bins, degrees

    def validate(self) -> None:
        from ntdm_cli.errors import ConfigError

        if self.overlays < 0:
            raise ConfigError(f"eval.overlays: must be >= 0, got {self.overlays}")
        if self.listed_ids < 1:
            raise ConfigError(f"eval.listed_ids: must be >= 1, got {self.listed_ids}")
        if not 0 < self.histogram_bin_deg <= 180:
            raise ConfigError(f"eval.histogram_bin_deg: must be in (0, 180], got {self.histogram_bin_deg}")


# ------------------------------------------------------------------------------------------------
# Predictions


@dataclass
class Predictions:
    """One predictions artifact, masks read on demand (``mask(image_id, which)``)."""

    label: str
    path: Path
    attrs: dict[str, Any]
    image_ids: list[str]
    category: list[str]  # predicted class per image
    angles: np.ndarray  # (N,3) azimuth, elevation, theta, radians
    rotation: np.ndarray | None  # (N,3,3) as stored, or None
    occlusion_level: np.ndarray  # (N,) int
    nuisance: list[str]
    categories: list[str]  # candidate classes of the model ((C,), may be empty)
    category_angles: np.ndarray | None = None  # (N, C, 3) pose solved for each class (NaN: not solved), or None
    loss: np.ndarray | None = None  # (N,) loss of the answer, or None
    annotated_loss: np.ndarray | None = None  # (N,) loss at the annotation (NaN: not computed), or None
    artifact: LazyArtifact | None = None
    index: dict[str, int] = field(default_factory=dict)

    def mask(self, image_id: str, which: str) -> np.ndarray | None:
        if self.artifact is None:
            return None
        value = self.artifact.read(mask_key(image_id, which))
        return None if value is None else np.asarray(value, dtype=bool)

    @property
    def split(self) -> str | None:
        value = self.attrs.get("split")
        return str(value) if value not in (None, "") else None

    def close(self) -> None:
        if self.artifact is not None:
            self.artifact.close()
            self.artifact = None


def load_predictions(path: str | os.PathLike, label: str) -> Predictions:
    """Open a ``predictions`` artifact and read its per-image arrays (not the masks).

    Raises ArtifactError (exit 1) for a missing/other-kind/old file and NtdmError for inconsistent
    lengths, duplicate image ids or missing required datasets."""
    art = open_artifact(path, "predictions")
    try:
        ids = art.read("image_id", required=True)
        ids = [ids] if isinstance(ids, str) else list(ids)
        n = len(ids)

        def arr(key: str, required: bool = True, dtype=np.float64) -> np.ndarray | None:
            value = art.read(key)
            if value is None:
                if required:
                    raise NtdmError(f"{art.path}: predictions artifact has no '{key}'")
                return None
            value = np.asarray(value, dtype=dtype) if dtype is not None else value
            if len(value) != n:
                raise NtdmError(f"{art.path}: '{key}' has {len(value)} entries, 'image_id' has {n}")
            return value

        def strings(key: str, default: str | None) -> list[str]:
            value = art.read(key)
            if value is None:
                if default is None:
                    raise NtdmError(f"{art.path}: predictions artifact has no '{key}'")
                return [default] * n
            value = [value] if isinstance(value, str) else [str(v) for v in value]
            if len(value) != n:
                raise NtdmError(f"{art.path}: '{key}' has {len(value)} entries, 'image_id' has {n}")
            return value

        angles = np.stack([arr(k) for k in ANGLE_KEYS], -1).reshape(n, 3)
        rotation = arr("rotation", required=False)
        if rotation is not None and rotation.shape != (n, 3, 3):
            raise NtdmError(f"{art.path}: 'rotation' has shape {rotation.shape}, expected ({n}, 3, 3)")
        occ = arr("occlusion_level", required=False, dtype=np.int64)
        cats = art.read("categories")
        cats = [] if cats is None else ([cats] if isinstance(cats, str) else [str(c) for c in cats])
        per_class = arr("category_viewpoints", required=False)
        if per_class is not None:
            if per_class.shape != (n, len(cats), 4):
                raise NtdmError(f"{art.path}: 'category_viewpoints' has shape {per_class.shape}, "
                                f"expected ({n}, {len(cats)}, 4) (images, categories, azimuth/elevation/theta/distance)")
            per_class = per_class[..., :3]
        preds = Predictions(
            label=label, path=art.path, attrs=dict(art.attrs), image_ids=[str(i) for i in ids],
            category=strings("category", None), angles=angles, rotation=rotation,
            occlusion_level=np.zeros(n, np.int64) if occ is None else occ,
            nuisance=strings("nuisance", ""), categories=cats, category_angles=per_class,
            loss=arr("loss", required=False), annotated_loss=arr("annotated_loss", required=False), artifact=art,
        )
        preds.index = {image_id: i for i, image_id in enumerate(preds.image_ids)}
        if len(preds.index) != n:
            seen: set[str] = set()
            dup = next(i for i in preds.image_ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise NtdmError(f"{art.path}: image_id {dup!r} occurs more than once")
        return preds
    except BaseException:
        art.close()
        raise


# ------------------------------------------------------------------------------------------------
# Evaluation


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


# ------------------------------------------------------------------------------------------------
# Output


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy scalars → Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _pct(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}"


def _deg(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.1f}"


def _atomic_write(path: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


def _safe_name(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep[:80] or "image"


#: Columns of the per-group tables: (json key, header, formatter).
_COLUMNS = [
    ("n", "n", lambda x: str(x)),
    ("acc_pi_6", "π/6 acc (%)", _pct),
    ("acc_pi_18", "π/18 acc (%)", _pct),
    ("median_error_deg", "median err (°)", _deg),
    ("amodal_iou", "amodal IoU (%)", _pct),
    ("visible_iou", "visible IoU (%)", _pct),
    ("class_acc", "class acc (%)", _pct),
]


def _has_symmetric(runs: Sequence[RunResult]) -> bool:
    """Whether some scored image of some run shows a rotationally symmetric CAD."""
    return any(r.summary["all"].get("n_symmetric", 0) for r in runs)


def table1(runs: Sequence[RunResult]) -> tuple[list[str], list[list[str]]]:
    """The layout of the paper's table 1: one row per run; π/6, π/18, amodal IoU, visible IoU and
    class accuracy for each occlusion level present (i.i.d. images only)."""
    levels = sorted({lv for r in runs for lv in r.summary["by_occlusion"]})
    header = ["run"]
    metrics = [("acc_pi_6", "π/6"), ("acc_pi_18", "π/18"), ("amodal_iou", "amodal IoU"),
               ("visible_iou", "visible IoU"), ("class_acc", "class")]
    if _has_true_class(runs):
        metrics += [("acc_pi_6_true_class", "π/6 true class")]
    if _has_symmetric(runs):
        metrics += [("acc_pi_6_sym", "π/6 sym.-aware"), ("acc_pi_18_sym", "π/18 sym.-aware")]
    for _, name in metrics:
        header += [f"{name} {lv}" for lv in levels]
    rows = []
    for r in runs:
        row = [r.label]
        for key, _ in metrics:
            row += [_pct(r.summary["by_occlusion"].get(lv, {}).get(key)) for lv in levels]
        rows.append(row)
    return header, rows


def table2(runs: Sequence[RunResult], key: str) -> tuple[list[str], list[list[str]]] | None:
    """The layout of the paper's table 2 for one metric: one row per run, one column per OOD
    nuisance, and the image-weighted mean over all OOD images. None without OOD images."""
    nuis = sorted({n for r in runs for n in r.summary["by_nuisance"]})
    if not nuis:
        return None
    header = ["run"] + nuis + ["mean"]
    rows = []
    for r in runs:
        ood = r.summary["ood_mean"] or {}
        rows.append([r.label] + [_pct(r.summary["by_nuisance"].get(n, {}).get(key)) for n in nuis]
                    + [_pct(ood.get(key))])
    return header, rows


#: Extra columns when some scored image shows a rotationally symmetric CAD.
_SYM_COLUMNS = [
    ("n_symmetric", "n sym. CAD", lambda x: str(x)),
    ("acc_pi_6_sym", "π/6 acc, sym.-aware (%)", _pct),
    ("acc_pi_18_sym", "π/18 acc, sym.-aware (%)", _pct),
]


#: Extra columns when the predictions carry the pose solved for every class (pose given the class).
_TRUE_CLASS_COLUMNS = [
    ("acc_pi_6_true_class", "π/6 acc, true class (%)", _pct),
    ("acc_pi_18_true_class", "π/18 acc, true class (%)", _pct),
]


#: Extra columns when the predictions carry the loss at the annotation: why the wrong poses are wrong.
_FAILURE_COLUMNS = [
    ("n_wrong", "n err ≥ π/6", lambda x: str(x)),
    ("n_search_failures", "search failures", lambda x: str(x)),
    ("n_model_failures", "model failures", lambda x: str(x)),
    ("n_flips", "flips > 150°", lambda x: str(x)),
]


def _has_failures(runs: Sequence[RunResult]) -> bool:
    """Whether some run knows the loss at the annotation of some image."""
    return any(r.summary["all"].get("n_search_failures", 0) + r.summary["all"].get("n_model_failures", 0)
               for r in runs)


def _has_true_class(runs: Sequence[RunResult]) -> bool:
    """Whether some run scored the pose solved for the annotated class."""
    return any(r.summary["all"].get("n_true_class", 0) for r in runs)


def _columns(runs: Sequence[RunResult]) -> list:
    cols = list(_COLUMNS)
    if _has_true_class(runs):
        cols += _TRUE_CLASS_COLUMNS
    if _has_symmetric(runs):
        cols += _SYM_COLUMNS
    if _has_failures(runs):
        cols += _FAILURE_COLUMNS
    return cols


def summary_table(runs: Sequence[RunResult]) -> tuple[list[str], list[list[str]]]:
    """One row per run over all its scored images (micro average) plus the category mean."""
    cols = _columns(runs)
    header = ["run"] + [h for _, h, _ in cols] + ["not annotated", "not predicted"]
    rows = []
    for r in runs:
        s = r.summary["all"]
        rows.append([r.label] + [f(s[k]) for k, _, f in cols]
                    + [str(len(r.predicted_not_annotated)), str(len(r.annotated_not_predicted))])
    return header, rows


def category_table(run: RunResult) -> tuple[list[str], list[list[str]]]:
    cols = _columns([run])
    header = ["category"] + [h for _, h, _ in cols]
    rows = [[c] + [f(s[k]) for k, _, f in cols] for c, s in run.summary["by_category"].items()]
    mean = run.summary["category_mean"]
    if mean is not None:
        rows.append(["**mean (categories)**"] + [f(mean.get(k)) if k != "n" else str(mean["n"]) for k, _, f in cols])
    s = run.summary["all"]
    rows.append(["**all images**"] + [f(s[k]) for k, _, f in cols])
    return header, rows


def confusion_table(run: RunResult, which: str) -> tuple[list[str], list[list[str]]] | None:
    """The class confusion of ``which`` (iid | ood) images as a table; None when fewer than two
    categories are involved (nothing to confuse)."""
    conf = run.summary.get("class_confusion", {}).get(which)
    if not conf or len(conf["categories"]) < 2:
        return None
    names = conf["categories"]
    rows = [[c] + [str(n) for n in row] for c, row in zip(names, conf["counts"])]
    return ["annotated \\ predicted"] + names, rows


def _md_table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A Markdown table; the first ``text_columns`` columns left-aligned, the others right-aligned."""
    align = ["---"] * text_columns + ["---:"] * (len(header) - text_columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _mismatch(ids: list[str], listed: int) -> dict[str, Any]:
    return {"count": len(ids), "first": ids[:listed]}


def report_dict(runs: Sequence[RunResult], data_root: Path, listed_ids: int, overlay_paths: dict[str, list[str]]) -> dict:
    """The content of ``report.json``."""
    out: dict[str, Any] = {
        "ntdm_version": __version__,
        "created_by": command_line(),
        "data_root": str(data_root),
        "thresholds_rad": {"pi_6": PI_6, "pi_18": PI_18},
        "same_image_sets": same_image_sets(runs),
        "units": {"acc_*": "fraction", "*_iou": "fraction (mean over images with both masks)",
                  "class_acc": "fraction", "*_deg": "degrees"},
        "runs": [],
    }
    for r in runs:
        p = r.predictions
        out["runs"].append({
            "label": r.label,
            "predictions": str(p.path),
            "split": p.split,
            "predictions_data_root": p.attrs.get("data_root"),
            "n_predictions": len(p.image_ids),
            "n_annotated": len(r.annotated),
            "n_scored": len(r.results),
            "mismatch": {
                "predicted_not_annotated": _mismatch(r.predicted_not_annotated, listed_ids),
                "annotated_not_predicted": _mismatch(r.annotated_not_predicted, listed_ids),
                "level_or_nuisance_disagreements": r.level_disagreements,
            },
            "rotation_check": {"disagreements": r.rotation_disagreements,
                               "max_deg": math.degrees(r.max_rotation_disagreement),
                               "tolerance_deg": math.degrees(ROTATION_TOLERANCE)},
            **r.summary,
            "worst": [{"image_id": w.result.image_id, "category": w.result.category,
                       "pred_category": w.result.pred_category,
                       "pose_error_deg": math.degrees(w.result.pose_error),
                       "amodal_iou": w.result.amodal_iou} for w in r.worst],
            "overlays": overlay_paths.get(r.label, []),
        })
    return _clean(out)


def report_markdown(runs: Sequence[RunResult], data_root: Path, listed_ids: int,
                    overlay_paths: dict[str, list[str]]) -> str:
    """The content of ``report.md``."""
    parts = ["# ntdm evaluation report", "",
             f"Data: `{data_root}` · ntdm {__version__} · pose accuracy = error < threshold, error = "
             "‖logm(R_predᵀR_gt)‖_F/√2 (non-finite predictions count as 180°); IoU and accuracies in %.", ""]
    if _has_symmetric(runs):
        parts += ["*sym.-aware*: images whose CAD is rotationally symmetric about its vertical axis (n sym. CAD; "
                  "their azimuth cannot be seen) are scored with min over φ of the error of R_pred·Rz(φ); "
                  "other images as above. The paper's metric is the plain one.", ""]
    if _has_true_class(runs):
        parts += ["*true class*: the pose solved for the annotated class (pose given the class, as NeMo "
                  "evaluates), over the images where that class was solved; the plain columns score the pose "
                  "of the predicted class.", ""]
    if _has_failures(runs):
        parts += ["*search / model failures*: of the images with pose error ≥ π/6, those whose annotation "
                  "(annotated class, pose and shape) scores a lower loss than the answer (the optimiser missed "
                  "it) / not lower (the model prefers the wrong answer). *flips*: error above 150°.", ""]
    parts += ["## Summary (all scored images)", "", _md_table(*summary_table(runs)), ""]
    if not same_image_sets(runs):
        parts += ["**Note:** the runs were scored on different image sets (column n); compare with care.", ""]
    h, rows = table1(runs)
    if len(h) > 1:
        parts += ["## By occlusion level (layout of the paper's table 1, i.i.d. images)", "", _md_table(h, rows), ""]
    for key, name in (("acc_pi_6", "pose accuracy π/6"), ("acc_pi_18", "pose accuracy π/18"),
                      ("amodal_iou", "amodal IoU"), ("visible_iou", "visible IoU")):
        t = table2(runs, key)
        if t is not None:
            parts += [f"## OOD nuisances: {name} (layout of the paper's table 2)", "", _md_table(*t), ""]
    for r in runs:
        parts += [f"## By category: {r.label}", "", f"Predictions: `{r.predictions.path}`", "",
                  _md_table(*category_table(r)), ""]
        for which, title in (("iid", "i.i.d. images"), ("ood", "OOD images")):
            t = confusion_table(r, which)
            if t is not None:
                parts += [f"Class confusion, {title} (rows: annotated, columns: predicted):", "",
                          _md_table(*t), ""]
    mism = [r for r in runs if r.predicted_not_annotated or r.annotated_not_predicted]
    parts += ["## Image sets", ""]
    if not mism:
        parts += ["Every predicted image is annotated and every annotated image of the evaluated selection "
                  "is predicted.", ""]
    for r in mism:
        for what, ids in (("predicted, not annotated", r.predicted_not_annotated),
                          ("annotated, not predicted", r.annotated_not_predicted)):
            if ids:
                first = ", ".join(f"`{i}`" for i in ids[:listed_ids])
                parts.append(f"* **{r.label}**: {len(ids)} {what} (left out of the metrics); first: {first}")
        parts.append("")
    if any(r.worst for r in runs):
        parts += ["## Worst cases (largest pose error)", "",
                  "Overlay: predicted amodal mask in red, annotated amodal outline in green.", ""]
        for r in runs:
            paths = overlay_paths.get(r.label, [])
            header = ["run", "image", "category (pred)", "pose err (°)", "amodal IoU (%)", "overlay"]
            rows = []
            for j, w in enumerate(r.worst):
                link = f"![{w.result.image_id}]({paths[j]})" if j < len(paths) and paths[j] else "–"
                rows.append([r.label, f"`{w.result.image_id}`", f"{w.result.category} ({w.result.pred_category})",
                             _deg(math.degrees(w.result.pose_error)), _pct(w.result.amodal_iou), link])
            if rows:
                parts += [_md_table(header, rows, text_columns=3), ""]
    return "\n".join(parts)


def _plot_accuracy(runs: Sequence[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({lv for r in runs for lv in r.summary["by_occlusion"]})
    groups, source, xlabel = levels, "by_occlusion", "occlusion level"
    if not levels:
        groups = sorted({n for r in runs for n in r.summary["by_nuisance"]})
        source, xlabel = "by_nuisance", "OOD nuisance"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(groups))
    for j, r in enumerate(runs):
        color = f"C{j % 10}"
        get = lambda key: [100 * (r.summary[source].get(g, {}).get(key, float("nan"))) for g in groups]  # noqa: E731
        axes[0].plot(x, get("acc_pi_6"), "o-", color=color, label=f"{r.label} π/6")
        axes[0].plot(x, get("acc_pi_18"), "s--", color=color, label=f"{r.label} π/18")
        axes[1].plot(x, get("amodal_iou"), "o-", color=color, label=f"{r.label} amodal IoU")
        axes[1].plot(x, get("class_acc"), "^:", color=color, label=f"{r.label} class acc")
    for ax, title in zip(axes, ("pose accuracy (%)", "amodal IoU / class accuracy (%)")):
        ax.set_xticks(x, groups)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def _plot_histogram(runs: Sequence[RunResult], path: Path, bin_deg: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.arange(0.0, 180.0 + bin_deg, bin_deg)
    bins[-1] = max(bins[-1], 180.0 + 1e-9)
    for j, r in enumerate(runs):
        err = np.degrees([x.pose_error for x in r.results])
        ax.hist(err, bins=bins, histtype="step", linewidth=1.5, color=f"C{j % 10}", label=f"{r.label} (n={len(err)})")
    for t, name in ((30, "π/6"), (10, "π/18")):
        ax.axvline(t, color="gray", linestyle=":", linewidth=1)
        ax.text(t, ax.get_ylim()[1] * 0.95, f" {name}", color="gray", fontsize=8, va="top")
    ax.set_xlim(0, 180)
    ax.set_xlabel("pose error (°)")
    ax.set_ylabel("images")
    ax.set_title("pose error histogram (non-finite predictions at 180°)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def _save_figure(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _atomic_write(path, buf.getvalue())


def _boundary(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    edge = m & ~inner
    thick = edge.copy()  # 2-pixel outline
    thick[1:, :] |= edge[:-1, :]
    thick[:, 1:] |= edge[:, :-1]
    return thick


def overlay_image(case: WorstCase) -> np.ndarray | None:
    """(H,W,3) uint8: the image with the predicted amodal mask tinted red and the annotated amodal
    outline in green; None when the image is missing or the masks do not fit it."""
    img = case.image
    if img is None:
        return None
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        return None
    out = img[..., :3].astype(np.float32)
    if out.max() <= 1.0 and img.dtype != np.uint8:
        out *= 255.0
    hw = out.shape[:2]
    if case.pred_mask is not None and case.pred_mask.shape == hw:
        m = case.pred_mask.astype(bool)
        out[m] = 0.55 * out[m] + 0.45 * np.array([255.0, 40.0, 40.0])
        out[_boundary(m)] = (255.0, 0.0, 0.0)
    if case.gt_mask is not None and case.gt_mask.shape == hw:
        out[_boundary(case.gt_mask)] = (0.0, 255.0, 0.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _write_overlays(runs: Sequence[RunResult], folder: Path) -> dict[str, list[str]]:
    from PIL import Image, ImageDraw

    paths: dict[str, list[str]] = {}
    skipped = 0
    for r in runs:
        paths[r.label] = []
        for rank, w in enumerate(r.worst, 1):
            pixels = overlay_image(w)
            if pixels is None:
                skipped += 1
                paths[r.label].append("")
                continue
            folder.mkdir(exist_ok=True)
            im = Image.fromarray(pixels)
            scale = max(1, math.ceil(256 / max(im.width, im.height)))  # small images: enlarge (nearest)
            if scale > 1:
                im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
            res = w.result
            lines = [f"{res.image_id}", f"err {math.degrees(res.pose_error):.1f} deg, amodal IoU {_pct(res.amodal_iou)}%, "
                     f"pred {res.pred_category} (gt {res.category})"]
            canvas = Image.new("RGB", (im.width, im.height + 28), (0, 0, 0))
            canvas.paste(im, (0, 28))
            draw = ImageDraw.Draw(canvas)
            for j, text in enumerate(lines):
                draw.text((3, 2 + 12 * j), text, fill=(255, 255, 255))
            im = canvas
            name = f"{_safe_name(r.label)}_{rank:02d}_{_safe_name(res.image_id)}.png"
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            _atomic_write(folder / name, buf.getvalue())
            paths[r.label].append(f"{folder.name}/{name}")
    if skipped:
        warn(f"{skipped} worst-case overlays skipped: image not readable or not loaded")
    return paths


def _per_image_csv(runs: Sequence[RunResult]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run", "image_id", "category", "pred_category", "occlusion_level", "nuisance",
                "pose_error_deg", "amodal_iou", "visible_iou", "correct_class", "symmetric_cad",
                "pose_error_sym_deg"])
    for r in runs:
        for x in r.results:
            w.writerow([r.label, x.image_id, x.category, x.pred_category, x.occlusion_level, x.nuisance,
                        f"{math.degrees(x.pose_error):.4f}",
                        "" if not math.isfinite(x.amodal_iou) else f"{x.amodal_iou:.5f}",
                        "" if not math.isfinite(x.visible_iou) else f"{x.visible_iou:.5f}", int(x.correct_class),
                        int(x.symmetric), f"{math.degrees(x.sym_error):.4f}"])
    return buf.getvalue().encode()


def write_report(runs: Sequence[RunResult], out_dir: str | os.PathLike, data_root: str | os.PathLike,
                 config: EvalConfig | None = None) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (created if missing; its parent must exist).
    Returns the written paths by name (``json``, ``markdown``, ``csv``, ``accuracy_plot``,
    ``histogram``, ``overlays``)."""
    config = config or EvalConfig()
    out = make_output_folder(out_dir, "--out")
    root = Path(data_root)
    overlay_paths = _write_overlays(runs, out / "overlays")
    files = {
        "json": out / "report.json", "markdown": out / "report.md", "csv": out / "per_image.csv",
        "accuracy_plot": out / "accuracy_vs_occlusion.png", "histogram": out / "error_histogram.png",
        "overlays": out / "overlays",
    }
    _plot_accuracy(runs, files["accuracy_plot"])
    _plot_histogram(runs, files["histogram"], config.histogram_bin_deg)
    _atomic_write(files["csv"], _per_image_csv(runs))
    doc = report_dict(runs, root, config.listed_ids, overlay_paths)
    _atomic_write(files["json"], (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode())
    _atomic_write(files["markdown"], (report_markdown(runs, root, config.listed_ids, overlay_paths) + "\n").encode())
    return files


def default_labels(paths: Sequence[str | os.PathLike], labels: str | None) -> list[str]:
    """``--labels a,b,...`` (one per file, unique) or the file stems (made unique with #i)."""
    if labels:
        names = [s.strip() for s in labels.split(",")]
        if len(names) != len(paths):
            raise NtdmUsageError(f"--labels: {len(names)} labels for {len(paths)} predictions files")
        if any(not n for n in names) or len(set(names)) != len(names):
            raise NtdmUsageError(f"--labels {labels!r}: labels must be non-empty and distinct")
        return names
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}#{i + 1}" for i, s in enumerate(stems)]


def run_eval(
    prediction_paths: Sequence[str | os.PathLike],
    data_root: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    *,
    labels: str | None = None,
    split: str | None = None,
    strict: bool = False,
    config: EvalConfig | None = None,
    ground_truth: GroundTruthLoader | None = None,
) -> tuple[list[RunResult], dict[str, Path]]:
    """Load the predictions, evaluate them and write the report (what ``ntdm eval`` does)."""
    config = config or EvalConfig()
    if not prediction_paths:
        raise NtdmUsageError("give at least one predictions file")
    names = default_labels(prediction_paths, labels)
    preds: list[Predictions] = []
    try:
        for path, name in zip(prediction_paths, names):
            preds.append(load_predictions(path, name))
        if data_root is None:
            data_root = preds[0].attrs.get("data_root") or None
            if data_root is None:
                raise NtdmUsageError("--data: not given and the predictions do not name their data_root")
        runs = evaluate(preds, data_root, split=split, overlays=config.overlays, ground_truth=ground_truth,
                        strict=strict, listed_ids=config.listed_ids)
        files = write_report(runs, out_dir, data_root, config)
    finally:
        for p in preds:
            p.close()
    return runs, files


def iter_table_rows(runs: Sequence[RunResult]) -> Iterator[tuple[str, list[str], list[list[str]]]]:
    """The tables printed by the CLI: (title, header, rows)."""
    yield ("summary (all scored images)", *summary_table(runs))
    h, rows = table1(runs)
    if len(h) > 1:
        yield ("by occlusion level (table 1 layout)", h, rows)
    for key, name in (("acc_pi_6", "π/6 accuracy"), ("acc_pi_18", "π/18 accuracy"), ("amodal_iou", "amodal IoU")):
        t = table2(runs, key)
        if t is not None:
            yield (f"OOD nuisances: {name} (table 2 layout)", *t)
