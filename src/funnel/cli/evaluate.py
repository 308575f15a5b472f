"""``funnel evaluate``: the whole funnel on a held-out period, as an HTML + JSON report.

The evaluation family: ``funnel evaluate`` (the marketplace replay, or ``--protocol
next-item``) and its subcommands (``funnel evaluate recall``, registered by its own module).
"""

from __future__ import annotations

import json
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from funnel.cli._app import WorkspaceOpt, app, console, fail, summary_table, user_errors
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from funnel.evaluate.next_item import NextItemResult


class Protocol(StrEnum):
    marketplace = "marketplace"
    next_item = "next-item"

HEADLINE = (
    ("funnel.booking.ndcg@10", "booking NDCG@10, funnel"),
    ("popularity.booking.ndcg@10", "booking NDCG@10, popularity"),
    ("no_personalization.booking.ndcg@10", "booking NDCG@10, no personalization"),
    ("no_rerank.booking.ndcg@10", "booking NDCG@10, no re-rank"),
    ("funnel.search.ndcg@10", "search-click NDCG@10, funnel"),
    ("popularity.search.ndcg@10", "search-click NDCG@10, popularity"),
    ("no_personalization.search.ndcg@10", "search-click NDCG@10, no personalization"),
    ("gain.funnel_vs_no_personalization.booking.ndcg@10",
     "booking NDCG@10 personalization gain (paired)"),
    ("gain.funnel_vs_no_personalization.booking.ndcg@10.ci95", "  ± 95%, clustered by user"),
    ("gain.funnel_vs_no_personalization.search.ndcg@10",
     "search NDCG@10 personalization gain (paired)"),
    ("gain.funnel_vs_no_personalization.search.ndcg@10.ci95", "  ± 95%, clustered by user"),
    ("rank.personal_gain.group_auc", "ranker group-AUC gain from personalization"),
    ("oracle.personal_gain.group_auc", "  ceiling (true personal term, synthetic)"),
    ("rank.personal_gain.share_of_ceiling", "  share of the ceiling captured"),
    ("oracle.history_bound.share_of_ceiling",
     "  share any model of the user's history could reach"),
    ("rank.personal_gain.share_of_history_bound", "  share of that history bound captured"),
    ("train.clicks_per_item", "clicks per item (training period)"),
    ("funnel.next_click.ndcg@10", "next-click NDCG@10, funnel"),
    ("popularity.next_click.ndcg@10", "next-click NDCG@10, popularity"),
    ("rank.auc", "ranker AUC (held-out impressions)"),
    ("bayes.auc", "Bayes-optimal AUC"),
    ("rank.logloss", "ranker logloss"),
    ("bayes.logloss", "Bayes-optimal logloss"),
    ("recall.merged.booking.recall@500", "merged recall@500 of bookings"),
    ("suggest.mrr", "suggestion MRR"),
    ("funnel.ild@10", "intra-list distance"),
    ("funnel.catalog_coverage", "catalog coverage"),
    ("latency.total.p50_ms", "latency p50 ms"),
    ("latency.total.p95_ms", "latency p95 ms"),
)


evaluate_app = typer.Typer(no_args_is_help=False)
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.callback(invoke_without_command=True)
def evaluate_command(
    ctx: typer.Context,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    split_date: Annotated[str | None, typer.Option(
        "--split-date", help="Train on events before this ISO date/time (UTC); evaluate on the "
        "rest. Default: the start of the last 20% of the event time span.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory for report.html, report.json and the training workspace. "
        "Default: WORKSPACE/evaluation.")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write every figure as one flat JSON object to this file.")] = None,
    max_cases: Annotated[int | None, typer.Option(
        "--max-cases", min=1, help="At most this many held-out cases of each kind "
        "(seeded sample). Default: 2000 (marketplace), all (next-item).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the case sample.")] = 0,
    stages: Annotated[str | None, typer.Option(
        "--stages", help="Stages to build on the training period (default: funnel build's).")
    ] = None,
    protocol: Annotated[Protocol, typer.Option(
        "--protocol", help="marketplace: replay searches, bookings and clicks of the held-out "
        "period (report.html). next-item: the session-rec protocol (HR@20 / MRR@20 of the next "
        "click at every position of every held-out session, against simple baselines).")
    ] = Protocol.marketplace,
    train: Annotated[Path | None, typer.Option(
        "--train", help="next-item: a session log to train on (instead of a workspace).")
    ] = None,
    test: Annotated[Path | None, typer.Option(
        "--test", help="next-item: the later session log to replay (with --train).")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="next-item: loader of --train/--test (e.g. yoochoose, diginetica).")
    ] = None,
    threaded: Annotated[bool, typer.Option(
        "--threaded", metavar="", help="Train with the workspace's threads (faster; the "
        "skip-gram's Hogwild updates make figures vary run to run). Default: single-threaded, "
        "so two runs with one seed give the same figures.")] = False,
) -> None:
    """Replay a held-out period through the funnel (a report); 'recall', 'rerank': one part.

    Trains on the past, replays the rest, writes report.html and report.json.

    With --protocol next-item: split the workspace's sessions by start time (the latest 20% are
    the test), build on the rest, and ask the served funnel (the GET /recommend code path), each
    of its recall sources alone and the simple baselines (popularity, co-occurrence, sequential
    rules, V-SKNN) for the next click at every position of every test session. With --train
    and --test, the two files are the split (ingested with --format into a temporary workspace).

    Every held-out search and booking is replayed in time order: the user's events go into the
    online state, and the engine (recall -> rank -> re-rank, the POST /search code path) is
    asked for the list at that moment. Baselines in the same run: popularity, no
    personalization, no re-ranking. Metrics that the data cannot support are listed as such.

    Example: funnel evaluate --workspace shop --split-date 2026-01-25 --out shop/eval

    Example: funnel evaluate --protocol next-item --train tr.tsv --test te.tsv --format yoochoose

    Example: funnel evaluate recall --workspace shop   (recall@K of every source)
    """
    if ctx.invoked_subcommand is not None:  # 'funnel evaluate recall ...'
        return
    if protocol is Protocol.next_item:
        _next_item(workspace, out=out, json_path=json_path, max_cases=max_cases, seed=seed,
                   stages=stages, train=train, test=test, fmt=fmt)
        return
    if train is not None or test is not None or fmt is not None:
        raise fail("--train/--test/--format go with --protocol next-item; add it, or drop them "
                   "to evaluate the workspace")
    from funnel.evaluate.run import EvalConfig, evaluate_workspace
    from funnel.evaluate.split import parse_split_date

    with user_errors():
        ws = Workspace.open(workspace)
        split_ms = parse_split_date(split_date) if split_date else None
        out_dir = out or ws.root / "evaluation"
        chosen = tuple(s.strip() for s in stages.split(",") if s.strip()) if stages else None
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=console) as bar:
            current: list[TaskID] = []

            def progress(step: str, total: int | None) -> None:
                if step:
                    if current:
                        bar.update(current[0], completed=bar.tasks[current[0]].total or 1)
                    current[:] = [bar.add_task(step, total=total or 1)]
                elif current:
                    bar.advance(current[0])

            result = evaluate_workspace(ws, out_dir, split_ms=split_ms,
                                        config=EvalConfig(max_cases=max_cases or 2000, seed=seed,
                                                          deterministic=not threaded),
                                        stages=chosen, progress=progress)
            if current:
                bar.update(current[0], completed=bar.tasks[current[0]].total or 1)
    figures = result.figures
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=1, sort_keys=True))
    rows: list[tuple[str, object]] = [
        (label, figures[key]) for key, label in HEADLINE if key in figures]
    rows += [(f"n/a: {name}", why) for name, why in result.not_applicable.items()]
    rows.append(("report", str(result.html_path)))
    console.print(summary_table("funnel evaluate", rows))


def _next_item(workspace: Path, *, out: Path | None, json_path: Path | None,
               max_cases: int | None, seed: int, stages: str | None, train: Path | None,
               test: Path | None, fmt: str | None) -> None:
    from funnel.evaluate.next_item_run import (
        build_split,
        file_split,
        run_next_item,
        workspace_split,
    )

    if (train is None) != (test is None):
        raise fail("--train and --test go together: pass both files of the split, or neither "
                   "to split the workspace's own sessions")
    if train is not None and fmt is None:
        raise fail("--format is needed with --train/--test (e.g. --format yoochoose)")
    chosen = tuple(s.strip() for s in stages.split(",") if s.strip()) if stages else None
    with user_errors(), tempfile.TemporaryDirectory(prefix="funnel-next-item-") as tmp:
        if train is not None and test is not None and fmt is not None:
            root = out or Path(tmp)
            console.print(f"[bold]▸ ingest[/] {train} and {test} ({fmt})")
            split = file_split(train, test, fmt, root)
        else:
            ws = Workspace.open(workspace)
            root = out or ws.root / "evaluation" / "next-item"
            console.print("[bold]▸ split[/] sessions by start time (latest 20% held out)")
            split = workspace_split(ws, root)
        console.print(f"[bold]▸ build[/] on {len(split.train):,} training sessions")
        artifact, build_s, notes = build_split(split, chosen)
        for note in notes:
            console.print(f"  {note}")
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=console) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(name: str, done: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=None)
                bar.update(tasks[name], completed=done)

            run = run_next_item(split, artifact, max_cases=max_cases, seed=seed,
                                progress=progress)
    figures = {**run.figures, "build_s": build_s}
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=1, sort_keys=True))
    console.print(next_item_table(run.result, title="funnel evaluate --protocol next-item"))
    console.print(f"build {build_s:.1f} s; GET /recommend path p50 "
                  f"{figures['recommend_p50_ms']:.1f} ms, p99 {figures['recommend_p99_ms']:.1f} ms")


def next_item_table(result: NextItemResult, *, title: str) -> Table:
    """Method x (HR@k, MRR@k on all cases; the same on new-to-session cases), with the 95%
    intervals clustered by session, and the share of lists re-showing a session item."""
    k = result.k
    judged = "new-to-session" if result.judged_on == "new" else "all"
    table = Table(title=title, header_style="bold", caption=(
        f"{result.cases:,} cases ({result.cases_new:,} new to the session) in "
        f"{result.sessions:,} sessions; ± = 95% interval clustered by session; the funnel is "
        f"judged on {judged} cases"))
    table.add_column("method", no_wrap=True)
    for head in (f"HR@{k}", f"MRR@{k}", f"HR@{k} new", f"MRR@{k} new"):
        table.add_column(head, justify="right", no_wrap=True)
    table.add_column("re-shows", justify="right")
    for name, m in result.methods.items():
        cells = [_with_ci(f.mean, f.ci95) for f in
                 (m.summary["hr@"], m.summary["mrr@"], m.summary["hr@_new"],
                  m.summary["mrr@_new"])]
        table.add_row(name, *cells, f"{m.reshow:.0%}")
    return table


def _with_ci(mean: float, half: float) -> str:
    """``0.231±.040`` (the interval's half-width; ``±?`` when it is undefined)."""
    if half != half:  # NaN: one session, or no case
        return f"{mean:.3f}±?"
    return f"{mean:.3f}±{half:.3f}".replace("±0.", "±.")
