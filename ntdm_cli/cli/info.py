"""``ntdm info FILE.h5``: kind, versions, provenance, config and datasets of an artifact."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from ntdm_cli.artifacts import describe
from ntdm_cli.console import out
from ntdm_cli.errors import short

SHOW_CHARS = 400  # an attribute value longer than this is shown cut in the middle
SHOW_CONFIG_CHARS = 20000


def info(path: Path = typer.Argument(..., help="An ntdm artifact (.h5).", show_default=False)) -> None:
    """Show an artifact's kind, schema version, provenance, config and datasets with shapes."""
    attrs, rows = describe(path)
    out.print(f"[bold]{escape(short(path))}[/bold]")
    for key in ("kind", "schema_version", "ntdm_version", "created_by"):
        out.print(f"  {key:15s} {escape(short(attrs.get(key, '?'), SHOW_CHARS))}")
    extra = {k: v for k, v in attrs.items() if k not in ("kind", "schema_version", "ntdm_version", "created_by", "config")}
    for key, value in sorted(extra.items()):
        out.print(f"  {escape(short(key, 40)):15s} {escape(short(value, SHOW_CHARS))}")
    config = str(attrs.get("config", "") or "").strip()
    if len(config) > SHOW_CONFIG_CHARS:  # the artifact reader bounds it; the highlighter is slower still
        config = config[:SHOW_CONFIG_CHARS] + f"\n# … ({len(config) - SHOW_CONFIG_CHARS} more characters not shown)"
    if config:
        out.print("  config:")
        out.print(Syntax(config, "yaml", theme="ansi_dark", background_color="default", padding=(0, 4)))
    table = Table(title=f"{len(rows)} datasets", show_lines=False)
    table.add_column("dataset")
    table.add_column("shape", justify="right")
    table.add_column("dtype")
    for name, shape, dtype in rows:
        table.add_row(name, shape, dtype)
    out.print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
