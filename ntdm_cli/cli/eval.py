"""``ntdm eval predictions.h5 [more.h5 ...] --data DIR --out report/``: the paper's evaluation."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ntdm_cli.cli.common import existing_file, existing_folder, state
from ntdm_cli.console import out


def eval_command(
    ctx: typer.Context,
    predictions: List[Path] = typer.Argument(..., help="predictions artifacts (from 'ntdm infer').", show_default=False),
    data: Optional[Path] = typer.Option(None, "--data", help="PASCAL3D+-layout data root with the annotations "
                                        "(default: the data_root stored in the first predictions file)."),
    out_dir: Path = typer.Option(Path("report"), "--out", help="Report folder (created; its parent must exist)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Comma-separated run names, one per predictions "
                                         "file (default: file names)."),
    split: Optional[str] = typer.Option(None, "--split", help="Annotation split (default: the predictions' split)."),
    overlays: Optional[int] = typer.Option(None, "--overlays", min=0, help="Worst cases drawn per file "
                                           "(default: eval.overlays = 4)."),
    strict: bool = typer.Option(False, "--strict", help="Fail when predicted and annotated image sets differ "
                                "(default: report the difference and score the common images)."),
) -> None:
    """Pose accuracy at π/6 and π/18, median error, amodal/visible IoU and class accuracy per category,
    occlusion level and OOD nuisance; report.json, report.md, plots and worst-case overlays."""
    from ntdm_cli.eval.report import EvalConfig, iter_table_rows, run_eval
    from ntdm_cli.fsutil import check_output_folder

    st = state(ctx)
    config = st.config.get("eval", EvalConfig)
    if overlays is not None:
        config = dataclasses.replace(config, overlays=overlays)
        st.config.set("eval", config)
    for p in predictions:
        existing_file(p, "PREDICTIONS")
    if data is not None:
        existing_folder(data, "--data")
    check_output_folder(out_dir, "--out", [("PREDICTIONS", p) for p in predictions] + [("--data", data)])
    runs, files = run_eval(predictions, data, out_dir, labels=labels, split=split, strict=strict, config=config)
    for title, header, rows in iter_table_rows(runs):
        table = Table(title=title)
        for j, h in enumerate(header):
            table.add_column(h, justify="left" if j == 0 else "right")
        for row in rows:
            table.add_row(*row)
        out.print(table)
    out.print(f"report: {files['markdown']}  ({files['json'].name}, {files['csv'].name}, "
              f"{files['accuracy_plot'].name}, {files['histogram'].name}, {files['overlays'].name}/)")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
