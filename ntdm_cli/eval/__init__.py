"""Evaluation: score predictions artifacts against PASCAL3D+-layout annotations (``ntdm eval``)."""

from ntdm_cli.eval.ground_truth import GroundTruth, ground_truth_from_sample, load_ground_truth
from ntdm_cli.eval.report import (
    EvalConfig,
    Predictions,
    RunResult,
    evaluate,
    load_predictions,
    run_eval,
    write_report,
)

__all__ = [
    "EvalConfig", "GroundTruth", "Predictions", "RunResult", "evaluate", "ground_truth_from_sample",
    "load_ground_truth", "load_predictions", "run_eval", "write_report",
]
