"""The root typer app and helpers shared by every command module."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from funnel.exceptions import FunnelError

app = typer.Typer(
    name="funnel",
    help=(
        "funnel: behaviour logs in, a served, personalized, diverse ranked list out.\n\n"
        "Start with 'funnel generate' (or 'funnel init' + 'funnel ingest'), 'funnel sessions', "
        "'funnel build', then 'funnel serve'."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # help text shows [embed], [rank] as written
    pretty_exceptions_enable=False,
)

def _version(show: bool) -> None:
    if show:
        from funnel import __version__

        print(f"funnel {__version__}")  # noqa: T201
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, metavar="",
        help="Print the version and exit.")] = False,
) -> None:
    """funnel: behaviour logs in, a served, personalized, diverse ranked list out."""


console = Console(stderr=True)
"""Human output (progress, tables, errors) goes to stderr so stdout stays machine-readable."""

stdout = Console()

WorkspaceOpt = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace directory.",
        envvar="FUNNEL_WORKSPACE",
        show_default=True,
    ),
]
JsonOpt = Annotated[bool, typer.Option(
    "--json", metavar="", help="Print machine-readable JSON to stdout.")]
"""A flag (``metavar=""``: typer would show ``<bool>``, as if it took a value)."""


def workspace_flag(workspace: Path) -> str:
    """`` -w <path>`` for a command line to copy, or "" for the default workspace."""
    from funnel.workspace import DEFAULT_WORKSPACE

    return "" if workspace == DEFAULT_WORKSPACE else f" -w {shlex.quote(str(workspace))}"


def say(label: str, message: str, *, style: str = "") -> None:
    """Print ``label: message`` to stderr as ONE line, never wrapped and never read as markup.

    Errors hold paths and commands a person copies; rich would wrap them at the terminal
    width (a space inside a file name when piped, or at 80 columns) and read ``[embed]`` as a
    style tag. ``soft_wrap`` keeps the line whole; ``Text`` keeps brackets literal.
    """
    line = Text(f"{label}: ", style=style) if label else Text()
    line.append(message)
    console.print(line, soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    """A one-line warning (see :func:`say`)."""
    say("warning", message, style="yellow")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (see :func:`say`) and return the exit to raise."""
    say("error", message, style="bold red")
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn funnel's own exceptions into one readable line and a non-zero exit."""
    try:
        yield
    except FunnelError as err:
        raise fail(str(err)) from None
    except KeyboardInterrupt:
        raise fail("interrupted; nothing was half-written", code=130) from None


def summary_table(title: str, rows: Mapping[str, Any] | list[tuple[str, Any]]) -> Table:
    """A two-column summary table (the one screen every long command ends with)."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("value", justify="right")
    items = rows.items() if isinstance(rows, Mapping) else rows
    for key, value in items:
        if isinstance(value, float):
            value = f"{value:,.4f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(str(key), str(value))
    return table


def print_json(payload: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
