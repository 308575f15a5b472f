"""``funnel evaluate``: the whole funnel on a held-out period, as an HTML + JSON report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from funnel.cli._app import WorkspaceOpt, app, console, summary_table, user_errors
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

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


@app.command("evaluate")
def evaluate_command(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    split_date: Annotated[str | None, typer.Option(
        "--split-date", help="Train on events before this ISO date/time (UTC); evaluate on the "
        "rest. Default: the start of the last 20% of the event time span.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory for report.html, report.json and the training workspace. "
        "Default: <workspace>/evaluation.")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write every figure as one flat JSON object to this file.")] = None,
    max_cases: Annotated[int, typer.Option(
        "--max-cases", min=1, help="At most this many held-out cases of each kind "
        "(seeded sample).")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the case sample.")] = 0,
    stages: Annotated[str | None, typer.Option(
        "--stages", help="Stages to build on the training period (default: funnel build's).")
    ] = None,
) -> None:
    """Train on the past, replay the held-out period through the served funnel, write a report.

    Every held-out search and booking is replayed in time order: the user's events go into the
    online state, and the engine (recall -> rank -> re-rank, the POST /search code path) is
    asked for the list at that moment. Baselines in the same run: popularity, no
    personalization, no re-ranking. Metrics that the data cannot support are listed as such.

    Example: funnel evaluate --workspace shop --split-date 2026-01-25 --out shop/eval
    """
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
            current: list[int] = []

            def progress(step: str, total: int | None) -> None:
                if step:
                    if current:
                        bar.update(current[0], completed=bar.tasks[current[0]].total or 1)
                    current[:] = [bar.add_task(step, total=total or 1)]
                elif current:
                    bar.advance(current[0])

            result = evaluate_workspace(ws, out_dir, split_ms=split_ms,
                                        config=EvalConfig(max_cases=max_cases, seed=seed),
                                        stages=chosen, progress=progress)
            if current:
                bar.update(current[0], completed=bar.tasks[current[0]].total or 1)
    figures = result.figures
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=1, sort_keys=True))
    rows = [(label, figures[key]) for key, label in HEADLINE if key in figures]
    rows += [(f"n/a: {name}", why) for name, why in result.not_applicable.items()]
    rows.append(("report", str(result.html_path)))
    console.print(summary_table("funnel evaluate", rows))
