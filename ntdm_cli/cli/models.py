"""``ntdm models``: which model ``ntdm infer`` uses without ``--model``, and the per-user default."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ntdm_cli.cli.common import state
from ntdm_cli.console import out


def models_cmd(
    ctx: typer.Context,
    set_default: Optional[Path] = typer.Option(None, "--set-default", help="Make this model artifact the user default."),
    clear_default: bool = typer.Option(False, "--clear-default", help="Forget the user default."),
) -> None:
    """Show the model `ntdm infer` uses without --model and where it comes from (in order: NTDM_MODEL, config infer.model, the user default); set or clear the user default."""
    from ntdm_cli.errors import NtdmUsageError
    from ntdm_cli.model.default import HOW_TO_GET_ONE, clear_user_default, default_file, model_report, set_user_default

    if set_default is not None and clear_default:
        raise NtdmUsageError("give --set-default PATH or --clear-default, not both")
    if set_default is not None:
        out.print(f"default model: {set_user_default(set_default)} (stored in {default_file()})")
        return
    if clear_default:
        out.print(f"default model cleared ({default_file()})" if clear_user_default() else "no default model was set")
        return
    config_value = str(state(ctx).config.raw.get("infer", {}).get("model", "") or "")
    rows = model_report(config_value)
    table = Table(title="model used by `ntdm infer` without --model (first source set wins)")
    for col in ("source", "model", "state"):
        table.add_column(col, no_wrap=col != "model")
    for r in rows:
        table.add_row(r.source, str(r.path) if r.path else "-", r.state)
    out.print(table)
    out.print(f"user default stored in {default_file()}", soft_wrap=True)
    used = [r for r in rows if r.state == "used"]
    missing = [r for r in rows if r.state == "missing"]
    if used:
        out.print(f"default: {used[0].path} (from {used[0].source})", soft_wrap=True)
    elif missing:
        out.print(f"the model of {missing[0].source} ({missing[0].path}) does not exist: `ntdm infer` without --model fails",
                  soft_wrap=True)
    else:
        out.print(f"no model: {HOW_TO_GET_ONE}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("models")(models_cmd)
