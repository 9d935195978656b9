"""The report's tables for ``ntdm eval``: the JSON document, the Markdown report and the console tables.

Accuracies and IoUs are fractions in JSON and percentages in the Markdown/console tables (like the
paper's tables); pose errors in degrees where a key says ``deg``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ntdm_cli import __version__
from ntdm_cli.artifacts import command_line
from ntdm_cli.eval.paired import paired_comparisons, paired_table
from ntdm_cli.eval.reading import ROTATION_TOLERANCE
from ntdm_cli.eval.scoring import RunResult, same_image_sets
from ntdm_cli.metrics import PI_6, PI_18

def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, numpy scalars → Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def pct(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}"


def deg(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.1f}"



def safe_name(text: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return keep[:80] or "image"



#: Columns of the per-group tables: (json key, header, formatter).
_COLUMNS = [
    ("n", "n", lambda x: str(x)),
    ("acc_pi_6", "π/6 acc (%)", pct),
    ("acc_pi_18", "π/18 acc (%)", pct),
    ("median_error_deg", "median err (°)", deg),
    ("amodal_iou", "amodal IoU (%)", pct),
    ("visible_iou", "visible IoU (%)", pct),
    ("class_acc", "class acc (%)", pct),
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
            row += [pct(r.summary["by_occlusion"].get(lv, {}).get(key)) for lv in levels]
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
        rows.append([r.label] + [pct(r.summary["by_nuisance"].get(n, {}).get(key)) for n in nuis]
                    + [pct(ood.get(key))])
    return header, rows


#: Extra columns when some scored image shows a rotationally symmetric CAD.
_SYM_COLUMNS = [
    ("n_symmetric", "n sym. CAD", lambda x: str(x)),
    ("acc_pi_6_sym", "π/6 acc, sym.-aware (%)", pct),
    ("acc_pi_18_sym", "π/18 acc, sym.-aware (%)", pct),
]


#: Extra columns when the predictions carry the pose solved for every class (pose given the class).
_TRUE_CLASS_COLUMNS = [
    ("acc_pi_6_true_class", "π/6 acc, true class (%)", pct),
    ("acc_pi_18_true_class", "π/18 acc, true class (%)", pct),
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
                  "class_acc": "fraction", "*deg": "degrees"},
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
    if len(runs) > 1:
        out["paired"] = [c.as_dict() for c in paired_comparisons(runs)]
    return clean(out)


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
        parts += ["*search / model failures*: of the images with pose error ≥ π/6, those where the solver, "
                  "started at the annotation (annotated class, pose and shape; then pose, shape and scale "
                  "optimised as for the answers), ends with a lower loss than the answer (the search missed "
                  "it) / not lower (the model prefers the wrong answer). *flips*: error above 150°.", ""]
    parts += ["## Summary (all scored images)", "", _md_table(*summary_table(runs)), ""]
    if not same_image_sets(runs):
        parts += ["**Note:** the runs were scored on different image sets (column n); compare with care.", ""]
    if len(runs) > 1:
        parts += [f"## Paired comparison with {runs[0].label}", "",
                  "On the images both runs scored: how many only the first run (*against*) gets right and how "
                  "many only this run gets right, and McNemar's exact p (the chance of a split at least this "
                  "uneven if each of those images were equally likely to fall either way). A small difference "
                  "in accuracy with a large p is a reshuffle of near-ties, not a better setting.", "",
                  _md_table(*paired_table(paired_comparisons(runs)), text_columns=2), ""]
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
                             deg(math.degrees(w.result.pose_error)), pct(w.result.amodal_iou), link])
            if rows:
                parts += [_md_table(header, rows, text_columns=3), ""]
    return "\n".join(parts)


def iter_table_rows(runs: Sequence[RunResult]) -> Iterator[tuple[str, list[str], list[list[str]]]]:
    """The tables printed by the CLI: (title, header, rows)."""
    yield ("summary (all scored images)", *summary_table(runs))
    if len(runs) > 1:
        yield (f"paired with {runs[0].label}: images right only in one run, McNemar p",
               *paired_table(paired_comparisons(runs)))
    h, rows = table1(runs)
    if len(h) > 1:
        yield ("by occlusion level (table 1 layout)", h, rows)
    for key, name in (("acc_pi_6", "π/6 accuracy"), ("acc_pi_18", "π/18 accuracy"), ("amodal_iou", "amodal IoU")):
        t = table2(runs, key)
        if t is not None:
            yield (f"OOD nuisances: {name} (table 2 layout)", *t)

