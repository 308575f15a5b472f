"""``funnel build``: every stage into ONE new artifact version, switched atomically at the end."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from funnel.build import BUILDERS, DEFAULT_STAGES, STAGES, run_build, skip_lines
from funnel.cli._app import JsonOpt, WorkspaceOpt, app, console, print_json, user_errors
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


@app.command("build")
def build_command(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    stages: Annotated[
        str,
        typer.Option(
            "--stages",
            help=f"Comma-separated stages, in order. Known: {', '.join(STAGES)}.",
        ),
    ] = ",".join(DEFAULT_STAGES),
    as_json: JsonOpt = False,
) -> None:
    """Build every stage (embeddings, indexes, rankers, suggestions) into one new artifact version.

    The version becomes 'current' only when every stage succeeded; a failed or interrupted build
    leaves the serving version untouched. A running server picks it up on /admin/reload.

    Example: funnel build --workspace shop
    Example: funnel build --workspace shop --stages catalog,embeddings,recall
    """
    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    unknown = [s for s in chosen if s not in BUILDERS]
    if unknown or not chosen:
        console.print(
            f"[bold red]error:[/] unknown stage(s) {unknown or stages!r}; "
            f"choose from {', '.join(STAGES)}"
        )
        raise typer.Exit(2)
    with user_errors():
        ws = Workspace.open(workspace)
        version, results = run_build(
            ws, chosen, on_stage=lambda s: console.print(f"[bold]▸ {s}[/]")
        )
    if as_json:
        print_json({"version": version, **{f"{s}.{k}": v for s, m in results.items()
                                          for k, v in m.items()}})
        return
    from rich.table import Table

    table = Table(title=f"build {version} (now current)", header_style="bold")
    table.add_column("stage")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for stage, metrics in results.items():
        if "skipped" in metrics:  # the reason is printed below the table, in full
            table.add_row(stage, "[yellow]skipped[/]", "see below")
            continue
        shown_rows = [(k, v) for k, v in metrics.items() if not k.startswith("skipped.")]
        for i, (key, value) in enumerate(shown_rows):
            table.add_row(stage if i == 0 else "", key, _fmt(value))
    console.print(table)
    from rich.markup import escape

    for line in skip_lines(results):
        console.print(f"[yellow]{escape(line)}[/]", highlight=False)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
