"""Recall commands: 'funnel index' builds every index; 'funnel recall-eval' measures recall@K."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from funnel.cli._app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    fail,
    print_json,
    summary_table,
    user_errors,
)
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


def _recall_table(title: str, rows: list[dict[str, float | str]]) -> Table:
    table = Table(title=title, header_style="bold")
    keys = [k for k in rows[0] if k not in ("source", "target")] if rows else []
    for col in ("source", "target", *keys):
        table.add_column(col, justify="left" if col in ("source", "target") else "right")
    for row in rows:
        cells = [str(row["source"]), str(row["target"])]
        cells += [f"{row[k]:,.0f}" if k == "n" else f"{row[k]:.3f}" for k in keys]
        table.add_row(*cells)
    return table


@app.command("index")
def index_cmd(workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """Build every recall index (vector ANN, lexical BM25, co-visitation, popularity,
    query -> items) from the workspace into a new artifact version.

    Example: funnel index --workspace shop
    """
    from funnel.recall.build import build_recall

    with user_errors():
        ws = Workspace.open(workspace)
        build = ws.artifacts.begin()
        try:
            with Progress(
                SpinnerColumn(), TextColumn("[bold]recall: {task.description}"),
                TimeElapsedColumn(), console=console, transient=True,
            ) as bar:
                task = bar.add_task("loading", total=None)
                metrics = build_recall(
                    ws, build, progress=lambda name: bar.update(task, description=name)
                )
            version = build.commit()
        except BaseException:
            build.abort()
            raise
    metrics_out: dict[str, float | int | str] = {
        k: int(v) if float(v).is_integer() and not k.endswith("_s") else v
        for k, v in metrics.items()
    }
    metrics_out["version"] = version.name
    if as_json:
        print_json(metrics_out)
    else:
        console.print(summary_table(f"recall indexes -> {version.name}", metrics_out))


@app.command("recall-eval")
def recall_eval(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            help="'workspace' (its sessions and events) or 'diginetica' (the shared real log).",
        ),
    ] = "workspace",
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", help="Latest share of sessions held out.")
    ] = 0.1,
    max_cases: Annotated[int, typer.Option("--max-cases", help="Cases sampled.", min=1)] = 2000,
    as_json: JsonOpt = False,
) -> None:
    """Recall@20/100/500 of the next clicked and the booked item, per source and merged,
    fitted on the past and scored on the latest sessions.

    Example: funnel recall-eval --workspace shop --test-fraction 0.1
    """
    from funnel.recall.holdout import diginetica_tables, holdout_recall

    with user_errors():
        if dataset == "diginetica":
            from funnel.data.paths import shared_data_dir

            path = shared_data_dir() / "diginetica-sample-srgnn"
            if not path.exists():
                raise fail(f"diginetica sample not found at {path}")
            sessions, events = diginetica_tables(path)
            items = None
            extra: list = []
        elif dataset == "workspace":
            ws = Workspace.open(workspace)
            con = ws.connect(read_only=True)
            try:
                sessions = con.sql(
                    "SELECT session_id, end_ts, market, items, queries, booked_item FROM sessions"
                ).to_arrow_table()
                events = con.sql(
                    "SELECT ts, user_id, event_type, item_id, query, market FROM events"
                ).to_arrow_table()
                items = con.sql(
                    "SELECT item_id, title, brand, category, market FROM items"
                ).to_arrow_table()
            except Exception as err:  # duckdb.CatalogException: no sessions table yet
                raise fail(f"{ws.store_path}: {err}; run 'funnel sessions' first") from None
            finally:
                con.close()
            extra = []
            current = ws.artifacts.current()
            if current is not None and (current / "recall" / "vector").exists():
                from funnel.recall.build import load_recall

                vec = load_recall(current).sources.get("vector")
                extra = [vec] if vec is not None else []
        else:
            raise fail(f"--dataset must be 'workspace' or 'diginetica'; got {dataset!r}")
        with console.status("fitting on the past, scoring the held-out sessions"):
            rows = holdout_recall(
                sessions, events, items, extra_sources=extra, test_fraction=test_fraction,
                max_cases=max_cases,
            )
    if as_json:
        print_json({"rows": rows})
    else:
        console.print(_recall_table(f"recall@K on {dataset} (held-out {test_fraction:.0%})", rows))
        n_cases = {str(r["target"]): int(float(r["n"])) for r in rows}
        console.print(summary_table("held-out cases", {"dataset": dataset, **n_cases}))
