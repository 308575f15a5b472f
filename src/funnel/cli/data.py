"""Data commands: init, generate, ingest, stats, sessions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from funnel.cli._app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    fail,
    print_json,
    say,
    summary_table,
    user_errors,
    warn,
    workspace_flag,
)
from funnel.config import section
from funnel.config_template import config_template
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


@app.command()
def init(workspace: WorkspaceOpt = DEFAULT_WORKSPACE) -> None:
    """Create a workspace: funnel.toml, the DuckDB event store, quarantine/ and artifacts/.

    Example: funnel init --workspace shop
    """
    with user_errors():
        ws = Workspace.init(workspace, config=config_template())
    console.print(f"workspace ready at [bold]{ws.root}[/] (config: {ws.config_path})")


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files to ingest (Parquet, CSV, JSON Lines, or a real-data format)."),
    ],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help=(
                "parquet, csv, tsv, jsonl, or a loader: movielens, ml-100k, ml-1m, criteo, "
                "diginetica, yoochoose, taobao. Default: by extension."
            ),
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help=(
                "items, users, events or truth (generic files only; default: detected "
                "from the columns)."
            ),
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate files and store them; failing rows go to quarantine with file, row, field, reason.

    Re-ingesting a file stores nothing twice. Each file is one transaction.

    Example: funnel ingest events.csv items.parquet --workspace shop

    Example: funnel ingest ../shared/data/taobao-userbehavior-sample/UserBehavior_head.csv -f taobao
    """
    from funnel.data.ingest import check_source, ingest_file

    totals = {"read": 0, "stored": 0, "quarantined": 0, "duplicates": 0}
    with user_errors():
        for path in paths:  # a mistyped path or format creates no workspace
            check_source(path, fmt, kind)
        ws = Workspace.init(workspace, config=config_template())
        reports = []
        with _progress() as progress:
            task = progress.add_task("ingesting", total=len(paths))
            for path in paths:
                progress.update(task, description=f"ingesting {path.name}")
                report = ingest_file(ws, path, fmt=fmt, kind=kind)
                reports.append(report)
                for key in totals:
                    totals[key] += getattr(report, key)
                progress.advance(task)
    for report in reports:
        if report.quarantined:
            warn(f"{report.path}: {report.quarantined:,} row(s) quarantined "
                 f"-> {report.quarantine_file}")
    if as_json:
        print_json(totals)
    else:
        console.print(summary_table(f"ingest into {ws.root}", totals))
    if totals["read"] == 0 or totals["stored"] + totals["duplicates"] == 0:
        raise fail(
            "nothing could be stored: every row failed validation; see the quarantine file(s) "
            "for the field and reason of each row"
        )


@app.command()
def stats(workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """Counts of events by type, users, items, sessions and quarantined rows.

    Example: funnel stats --workspace shop --json
    """
    from funnel.data.ingest import quarantine_count
    from funnel.data.store import EventStore

    with user_errors():
        ws = Workspace.open(workspace)
        with EventStore.open(ws.store_path, read_only=True) as store:
            by_type = dict(
                store.con.execute(
                    "SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 1"
                ).fetchall()
            )
            events_by_type = {k: int(v) for k, v in by_type.items()}
            payload: dict[str, object] = {
                "events": store.count("events"),
                "events_by_type": events_by_type,
                "users": int(
                    store.con.execute(
                        "SELECT count(*) FROM (SELECT user_id FROM users UNION "
                        "SELECT user_id FROM events)"
                    ).fetchall()[0][0]
                ),
                "items": store.count("items"),
                "sessions": store.count("sessions") if store.has_table("sessions") else 0,
                "quarantined": quarantine_count(ws),
            }
    if as_json:
        print_json(payload)
        return
    rows: list[tuple[str, object]] = [("events", payload["events"])]
    rows += [(f"  {k}", v) for k, v in events_by_type.items()]
    rows += [(k, payload[k]) for k in ("users", "items", "sessions", "quarantined")]
    console.print(summary_table(f"workspace {ws.root}", rows))


@app.command()
def sessions(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    gap_minutes: Annotated[
        float | None,
        typer.Option(
            "--gap-minutes",
            help="Split sessions on gaps longer than this (default: funnel.toml [sessions], 30).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the sessions table: a new session after more than 30 minutes between actions.

    Example: funnel sessions --workspace shop --gap-minutes 30
    """
    from funnel.data.store import EventStore
    from funnel.pipeline.sessions import SessionConfig, build_sessions

    with user_errors():
        ws = Workspace.open(workspace)
        cfg = section(ws.config(), "sessions", SessionConfig)
        gap = cfg.gap_minutes if gap_minutes is None else gap_minutes
        if gap <= 0:
            raise fail(f"--gap-minutes must be > 0, got {gap}")
        with EventStore.open(ws.store_path) as store:
            store.ensure_tables()
            summary = build_sessions(store.con, gap_minutes=gap)
    if as_json:
        print_json(summary)
    else:
        console.print(summary_table(f"sessions (gap {gap:g} min)", summary))


@app.command()
def generate(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    events: Annotated[
        int, typer.Option("--events", "-n", help="Approximate number of events.", min=1000)
    ] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 0,
    items: Annotated[
        int | None,
        typer.Option("--items", min=10, help="Catalog size; fewer items, more clicks per item "
                     "(default: events / 100, about 9 clicks per item)."),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option("--users", min=1, help="User count; fewer users, longer histories "
                     "(default: events / 200, about 200 events each)."),
    ] = None,
    context_strength: Annotated[
        float | None,
        typer.Option("--context-strength", min=0.0, max=1.0,
                     help="Click loss per same-brand item shown above (near-duplicates "
                     "cannibalize); default 0 = no list context (the listwise benchmark: "
                     "0.3)."),
    ] = None,
    continue_after_click: Annotated[
        float | None,
        typer.Option("--continue-after-click", min=0.0, max=1.0,
                     help="Chance a user keeps scanning after a click (else stops, satisfied); "
                     "default 1 = independent clicks (the listwise benchmark uses 0.7)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Only write the Parquet files to this directory; no workspace."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate a synthetic marketplace (with true click probabilities) and ingest it.

    Prints the Bayes-optimal AUC and logloss of the click label, the ceiling for any ranker,
    and the clicks per item: the density item embeddings and id fields learn from.

    Example: funnel generate --workspace shop --events 200000 --seed 7 --items 600
    """
    from funnel.data.synthetic import MarketplaceConfig
    from funnel.data.synthetic import generate as run_generator

    default = MarketplaceConfig()
    config = MarketplaceConfig(
        n_events=events, seed=seed, n_items=items, n_users=users,
        context_strength=default.context_strength if context_strength is None
        else context_strength,
        continue_after_click=default.continue_after_click if continue_after_click is None
        else continue_after_click,
    )
    context_tag = (
        "" if (config.context_strength, config.continue_after_click)
        == (default.context_strength, default.continue_after_click)
        else f"-ctx{config.context_strength:g}-cont{config.continue_after_click:g}"
    )
    started = time.perf_counter()
    with user_errors():
        target = (
            out if out is not None
            else Workspace.init(workspace, config=config_template()).raw_dir / (
                f"seed{seed}-n{events}" + (f"-items{items}" if items else "")
                + (f"-users{users}" if users else "") + context_tag)
        )
        with _progress() as progress:
            task = progress.add_task("generating", total=events)
            summary = run_generator(
                config, target, progress=lambda n: progress.update(task, completed=n)
            )
        rows: dict[str, object] = {
            "items": summary.n_items,
            "users": summary.n_users,
            "clicks per item": round(summary.clicks_per_item, 1),
            "context strength": config.context_strength,
            "continue after click": config.continue_after_click,
            **{f"events: {k}": v for k, v in summary.counts.items() if k in _EVENT_KEYS},
            "base CTR": summary.base_ctr,
            "Bayes-optimal AUC": summary.bayes_auc,
            "Bayes-optimal logloss": summary.bayes_logloss,
        }
        if out is None:
            from funnel.data.ingest import generated_files, ingest_file

            ws = Workspace.open(workspace)
            files = generated_files(target)
            stored = 0
            with _progress() as progress:
                task = progress.add_task("ingesting", total=len(files))
                for path in files:
                    stored += ingest_file(ws, path).stored
                    progress.advance(task)
            rows["rows stored"] = stored
        rows["seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        print_json({k.replace(" ", "_").replace(":", ""): v for k, v in rows.items()})
    else:
        console.print(summary_table(f"synthetic marketplace (seed {seed})", rows))
        if out is None:
            where = workspace_flag(workspace)
            say("next", f"funnel sessions{where} && funnel build{where}", style="bold")


_EVENT_KEYS = ("impression", "click", "add_to_cart", "booking", "search")
