"""The build orchestrator: every stage into ONE new artifact version, switched atomically.

Used by ``funnel build``, the tests, the benchmarks and the evaluation, so they all build the
same way. Stages are imported lazily: a stage's heavy dependencies load only when it runs.
"""

from __future__ import annotations

import importlib
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from funnel.artifacts import ArtifactBuild
from funnel.workspace import Workspace

STAGES = ("catalog", "embeddings", "recall", "rank", "rerank", "suggest", "generative")
DEFAULT_STAGES = ("catalog", "embeddings", "recall", "rank", "rerank", "suggest")


BUILDERS: dict[str, tuple[str, str]] = {
    "catalog": ("funnel.catalog", "build_catalog"),
    "embeddings": ("funnel.embed.build", "build_embeddings"),
    "recall": ("funnel.recall.build", "build_recall"),
    "rank": ("funnel.rank.build", "build_rank"),
    "rerank": ("funnel.rerank.build", "build_rerank"),
    "suggest": ("funnel.suggest.build", "build_suggest"),
    "generative": ("funnel.generative.build", "build_generative"),
}
"""Stage name -> (module, function ``f(workspace, build) -> metrics``), imported when it runs."""

SKIPPED = "skipped"
"""A stage's metrics key for "this stage did not run", its value the reason and the fix;
``skipped.<part>`` says it of one part of a stage (``recall``'s ``skipped.lexical``)."""


def builder(stage: str) -> Callable[[Workspace, ArtifactBuild], dict[str, Any]]:
    module, name = BUILDERS[stage]
    return getattr(importlib.import_module(module), name)


def skipped(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What a build skipped, and why: ``{"suggest": reason, "recall.lexical": reason, ...}``.

    A click log without a catalog or impressions skips the stages that need text or searches
    (lexical recall, query suggestion) and the models that need impressions; each says which
    file would enable it.
    """
    out: dict[str, str] = {}
    for stage, metrics in results.items():
        for key, value in metrics.items():
            if key == SKIPPED:
                out[stage] = str(value)
            elif key.startswith(SKIPPED + "."):
                out[key[len(SKIPPED) + 1:]] = str(value)
    return out


def skip_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per skip: ``"lexical: skipped, no item titles; ingest an items file ..."``."""
    return [f"{what}: skipped, {why}" for what, why in skipped(results).items()]


def run_build(
    ws: Workspace,
    stages: tuple[str, ...] = DEFAULT_STAGES,
    *,
    on_stage: Callable[[str], None] | None = None,
    tables: Path | str | None = None,
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Build ``stages`` in order into one staging directory; commit only if all succeed.

    Returns ``(version, {stage: metrics})``; a stage (or part of one) that could not run on
    this store says so in its metrics (``skipped`` / ``skipped.<part>``, see :func:`skipped`)
    and the build goes on without it. A skipped stage's component (the directory named as the
    stage, inherited from the current version) is removed: serving must not find an older
    version's model beside this build's other stages.

    ``tables``: a finished pipeline run's output directory or URL (``funnel pipeline run
    --out``, on DuckDB or Spark) to read every table from instead of the event store
    (:mod:`funnel.build_tables`).
    """
    unknown = [s for s in stages if s not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    if tables is not None:
        from funnel.build_tables import tables_workspace

        with tables_workspace(ws, tables) as from_tables:
            return run_build(from_tables, stages, on_stage=on_stage)
    results: dict[str, dict[str, Any]] = {}
    with ws.artifacts.begin() as build:
        for stage in stages:
            if on_stage is not None:
                on_stage(stage)
            t0 = time.perf_counter()
            metrics = builder(stage)(ws, build) or {}
            if SKIPPED in metrics:  # the stage ships nothing, not the version it replaces
                shutil.rmtree(build.path / stage, ignore_errors=True)
            metrics = dict(metrics)
            metrics["seconds"] = round(time.perf_counter() - t0, 2)
            results[stage] = metrics
        version = build.commit().name
    return version, results


def synthetic_workspace(
    root: Path,
    *,
    events: int = 30_000,
    seed: int = 0,
    n_items: int | None = None,
    n_users: int | None = None,
    stages: tuple[str, ...] = DEFAULT_STAGES,
    context_strength: float | None = None,
    continue_after_click: float | None = None,
) -> Workspace:
    """Generate, ingest, sessionize and build a synthetic marketplace (tests, benchmarks, demo).

    ``context_strength`` / ``continue_after_click``: the click model's list context
    (``MarketplaceConfig``'s; None keeps the generator's defaults)."""
    from funnel.data.ingest import generated_files, ingest_file
    from funnel.data.store import EventStore
    from funnel.data.synthetic import MarketplaceConfig, generate
    from funnel.pipeline.sessions import build_sessions

    ws = Workspace.init(root)
    raw = ws.raw_dir / f"seed{seed}-n{events}"
    config = MarketplaceConfig(n_events=events, seed=seed, n_items=n_items, n_users=n_users)
    if context_strength is not None:
        config = replace(config, context_strength=context_strength)
    if continue_after_click is not None:
        config = replace(config, continue_after_click=continue_after_click)
    generate(config, raw)
    for path in generated_files(raw):
        ingest_file(ws, path)
    with EventStore.open(ws.store_path) as store:
        build_sessions(store.con)
    if stages:
        run_build(ws, stages)
    return ws
