"""``funnel formats`` and ``funnel peek``: the real-data readers, without touching a workspace."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from funnel.cli._app import (
    JsonOpt,
    app,
    console,
    fail,
    print_json,
    say,
    summary_table,
    user_errors,
)


def _summary(doc: str | None) -> str:
    first = (doc or "").strip().splitlines()[0] if doc else ""
    return first.split(" (see ")[0].rstrip(".") + "."


@app.command()
def formats(as_json: JsonOpt = False) -> None:
    """List the real-data formats 'funnel ingest --format NAME' and 'funnel peek' can read.

    Example: funnel formats
    """
    from funnel.data.loaders import LOADERS

    rows = {name: _summary(loader.__doc__) for name, loader in LOADERS.items()}
    if as_json:
        print_json(rows)
        return
    table = Table(title="real-data formats", header_style="bold")
    table.add_column("--format")
    table.add_column("reads")
    for name, text in rows.items():
        table.add_row(name, text)
    console.print(table)


@app.command()
def peek(
    path: Annotated[Path, typer.Argument(help="A file (or directory, for MovieLens layouts).")],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="A loader name; see 'funnel formats'."),
    ],
    show: Annotated[
        int, typer.Option("--show", min=0, help="How many rejected lines to print.")
    ] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Read a real-data file through its loader and report what ingest would get; stores nothing.

    Prints rows per table, events per type, and the first rejected lines with row, field and
    reason, so a file can be checked before 'funnel ingest'.

    Example: funnel peek ../shared/data/taobao-userbehavior-sample/UserBehavior_head.csv -f taobao
    """
    from funnel.data.loaders import get_loader

    with user_errors():
        try:
            loader = get_loader(fmt)
        except ValueError as err:
            raise fail(str(err)) from None
        with console.status(f"reading {path} as {fmt}"):
            start = time.perf_counter()
            tables = loader(path)
            seconds = time.perf_counter() - start
    counts: dict[str, int | float] = {
        kind: table.num_rows for kind, table in tables.kinds().items()
    }
    if tables.events is not None:
        by_type = Counter(tables.events.column("event_type").to_pylist())
        counts.update({f"events: {k}": v for k, v in sorted(by_type.items())})
    counts["rejected"] = tables.rejected.num_rows
    if as_json:
        print_json({**counts, "seconds": round(seconds, 3)})
        return
    for row in tables.rejected.slice(0, show).to_pylist():
        where = f" {row['field']}:" if row["field"] else ""
        say("rejected", f"{row['source_file']}:{row['source_row']}{where} {row['reason']}",
            style="yellow")
    counts["seconds"] = seconds
    console.print(summary_table(f"{path} as {fmt}", counts))
