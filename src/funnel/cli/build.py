"""``funnel build``: every stage into ONE new artifact version, switched atomically at the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from funnel.artifacts import ArtifactBuild
from funnel.cli._app import JsonOpt, WorkspaceOpt, app, console, print_json, user_errors
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

STAGES = ("catalog", "embeddings", "recall", "rank", "rerank", "suggest", "generative")
DEFAULT_STAGES = ("catalog", "embeddings", "recall", "rank", "rerank", "suggest")


def _catalog(ws: Workspace, build: ArtifactBuild) -> dict[str, Any]:
    from funnel.serve.catalog import build_catalog

    return build_catalog(ws, build)


def _embeddings(ws: Workspace, build: ArtifactBuild) -> dict[str, Any]:
    from funnel.embed.build import build_embeddings

    return build_embeddings(ws, build)


def _recall(ws: Workspace, build: ArtifactBuild) -> dict[str, Any]:
    from funnel.recall.build import build_recall

    return build_recall(ws, build)


def _rank(ws: Workspace, build: ArtifactBuild) -> dict[str, Any]:
    from funnel.rank.build import build_rank

    return build_rank(ws, build)


def _rerank(ws: Workspace, build: ArtifactBuild) -> dict[str, Any]:
    from funnel.rerank.build import build_rerank

    return build_rerank(ws, build)


def _suggest(ws: Workspace, build: ArtifactBuild) -> dict[str, Any]:
    from funnel.suggest.build import build_suggest

    return build_suggest(ws, build)


def _generative(ws: Workspace, build: ArtifactBuild) -> dict[str, Any]:
    from funnel.generative.build import build_generative

    return build_generative(ws, build)


BUILDERS: dict[str, Callable[[Workspace, ArtifactBuild], dict[str, Any]]] = {
    "catalog": _catalog,
    "embeddings": _embeddings,
    "recall": _recall,
    "rank": _rank,
    "rerank": _rerank,
    "suggest": _suggest,
    "generative": _generative,
}


def run_build(ws: Workspace, stages: tuple[str, ...]) -> tuple[str, dict[str, dict[str, Any]]]:
    """Build ``stages`` in order into one staging directory; commit only if all succeed."""
    results: dict[str, dict[str, Any]] = {}
    with ws.artifacts.begin() as build:
        for stage in stages:
            console.print(f"[bold]▸ {stage}[/]")
            t0 = time.perf_counter()
            metrics = BUILDERS[stage](ws, build) or {}
            metrics = dict(metrics)
            metrics["seconds"] = round(time.perf_counter() - t0, 2)
            results[stage] = metrics
        version = build.commit().name
    return version, results


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
        version, results = run_build(ws, chosen)
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
        for i, (key, value) in enumerate(metrics.items()):
            shown = _fmt(value)
            table.add_row(stage if i == 0 else "", key, shown)
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
