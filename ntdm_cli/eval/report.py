"""``ntdm eval``: score predictions artifacts against annotations and write a report.

The library entry points, from the modules they live in (eval.reading, eval.scoring, eval.tables,
eval.plots, eval.overlays):

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
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ntdm_cli.config import section
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.eval.overlays import overlay_image, write_overlays  # noqa: F401  (public API)
from ntdm_cli.eval.plots import plot_accuracy, plot_histogram
from ntdm_cli.eval.reading import ROTATION_TOLERANCE, Predictions, load_predictions  # noqa: F401
from ntdm_cli.eval.scoring import GroundTruthLoader, RunResult, WorstCase, evaluate, same_image_sets  # noqa: F401
from ntdm_cli.eval.tables import (category_table, confusion_table, iter_table_rows, report_dict,  # noqa: F401
                                  report_markdown, summary_table, table1, table2)
from ntdm_cli.fsutil import make_output_folder, write_bytes


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
    overlay_paths = write_overlays(runs, out / "overlays")
    files = {
        "json": out / "report.json", "markdown": out / "report.md", "csv": out / "per_image.csv",
        "accuracy_plot": out / "accuracy_vs_occlusion.png", "histogram": out / "error_histogram.png",
        "overlays": out / "overlays",
    }
    plot_accuracy(runs, files["accuracy_plot"])
    plot_histogram(runs, files["histogram"], config.histogram_bin_deg)
    write_bytes(files["csv"], _per_image_csv(runs))
    doc = report_dict(runs, root, config.listed_ids, overlay_paths)
    write_bytes(files["json"], (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode())
    write_bytes(files["markdown"], (report_markdown(runs, root, config.listed_ids, overlay_paths) + "\n").encode())
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

