"""The one rich console of the toolkit and its progress-bar helper.

Messages and progress go to stderr so that stdout stays clean for results (tables, paths).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)  # results (tables, paths) on stdout

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("NTDM_NO_PROGRESS", "") == ""


@contextlib.contextmanager
def progress(transient: bool = False) -> Iterator[Progress]:
    """A rich Progress with description, bar, count, elapsed and remaining time, and a free-text
    ``info`` field for live figures (loss, images/s). Disabled with NTDM_NO_PROGRESS=1."""
    prog = Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
        disable=not progress_enabled(),
    )
    with prog:
        yield prog


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress() as prog:
        task = prog.add_task(description, total=total, info="")
        for item in items:
            yield item
            prog.advance(task)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


def info(message: str) -> None:
    console.print(message)


def warn_skipped(prefix: str, names: list[str], what: str, show: int = 3) -> None:
    """One warning line counting and naming skipped items: ``PREFIX 2 unreadable images (a.png, b.png)``."""
    from ntdm_cli.errors import short

    from rich.markup import escape

    shown = ", ".join(escape(short(n, 80)) for n in names[:show]) + (f", … ({len(names) - show} more)" if len(names) > show else "")
    warn(f"{prefix} {len(names)} {what}{'s' if len(names) != 1 else ''} ({shown})")
