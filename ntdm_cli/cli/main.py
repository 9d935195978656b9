"""Entry point of ``ntdm``: the Typer app, global options and the error policy.

Expected errors (:class:`~ntdm_cli.errors.NtdmError`, usage errors) print one red line and exit
with 1 (failure) or 2 (usage); anything else prints one line too, and the traceback only with
``--verbose``.
"""

from __future__ import annotations

import importlib
import pkgutil
import signal
import sys
import traceback
from pathlib import Path
from typing import List, Optional

import typer

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exc

from ntdm_cli import __version__
from ntdm_cli.cli.common import State, check_device_name
from ntdm_cli.config import ConfigStore
from ntdm_cli.console import console
from ntdm_cli.errors import NtdmError, short

app = typer.Typer(
    name="ntdm",
    help="Robust 3D object understanding by analysis-by-synthesis (Neural Textured Deformable Meshes).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ntdm {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks and debug output."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file: section -> key -> value."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key: section.key=value (repeatable)."),
) -> None:
    """Global options apply to every subcommand (they may also follow the subcommand)."""
    ctx.obj = State(device=check_device_name(device), verbose=verbose, config=ConfigStore(config, set_))


def _register_commands() -> None:
    import ntdm_cli.cli as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name in ("main", "common"):
            continue
        module = importlib.import_module(f"ntdm_cli.cli.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()

_GLOBAL_WITH_VALUE = ("--device", "--config", "--set")
_GLOBAL_FLAGS = ("--verbose", "-v")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options that follow the subcommand in front of it (``ntdm infer x --device cpu``)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        if a == "--":
            rest.extend(argv[i:])
            break
        if name in _GLOBAL_WITH_VALUE:
            if "=" in a:
                front.append(a)
            else:
                front.extend(argv[i:i + 2])
                i += 1
        elif a in _GLOBAL_FLAGS:
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


#: longest error line printed (a hostile path or value is cut in the middle)
MAX_ERROR_CHARS = 600


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally``/cleanup (temp files) runs."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _fail(message: str, code: int) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/bold red] {escape(short(message, MAX_ERROR_CHARS))}", markup=True,
                  soft_wrap=True)
    sys.exit(code)


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in _GLOBAL_FLAGS for a in argv)
    argv = hoist_global_options(argv)
    command = typer.main.get_command(app)
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (library use): leave the default
        pass
    try:
        rv = command.main(args=argv, prog_name="ntdm", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 130)
    except getattr(click_exc, "NoArgsIsHelpError", ()) as exc:  # help already printed
        sys.exit(exc.exit_code)
    except click_exc.ClickException as exc:
        if verbose:
            traceback.print_exc()
        hint = ""
        if isinstance(exc, click_exc.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        _fail(f"{exc.format_message()}{hint}", exc.exit_code)
    except NtdmError as exc:
        if verbose:
            traceback.print_exc()
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Terminated:
        _fail("terminated (SIGTERM); no partial output left", 143)
    except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into one line
        if verbose:
            traceback.print_exc()
            _fail(f"{exc.__class__.__name__}: {exc}", 1)
        _fail(f"{exc.__class__.__name__}: {exc} (run with --verbose for the traceback)", 1)
    sys.exit(rv if isinstance(rv, int) else 0)
