"""``build_suggest``: the suggest stage of ``funnel build`` (fit, evaluate, write component)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb

from funnel.artifacts import ArtifactBuild
from funnel.config import section
from funnel.exceptions import ArtifactError
from funnel.suggest.evaluate import holdout_evaluate
from funnel.suggest.model import QuerySuggester, SuggestConfig
from funnel.vectors import VectorTable, load_vectors
from funnel.workspace import Workspace

COMPONENT = "suggest"
SKIP_NO_SEARCHES = (
    "no search events with a query; ingest events with event_type 'search' and a query "
    "to enable it"
)
"""Why a build on a click log has no query suggestion (the stage's ``skipped``)."""
MIN_EVAL_SEARCHES = 20
"""The hold-out evaluation needs this many searches (``holdout_evaluate``)."""


def count_searches(con: duckdb.DuckDBPyConnection) -> int:
    """Search events that carry a non-blank query: what the suggester learns from."""
    rows = con.execute(
        "SELECT count(*) FROM events WHERE event_type = 'search' AND trim(coalesce(query, '')) "
        "<> ''"
    ).fetchall()
    return int(rows[0][0])


def read_query_vectors(artifact_dir: Path) -> VectorTable | None:
    """The embedding stage's query table in ``artifact_dir/embeddings``, if it was built."""
    directory = artifact_dir / "embeddings"
    if not (directory / "query_ids.json").exists():
        return None
    try:
        return load_vectors(directory, "query")
    except ArtifactError:
        return None


def suggest_config(workspace: Workspace) -> SuggestConfig:
    """The ``[suggest]`` table of the workspace's funnel.toml (defaults when absent)."""
    return section(workspace.config(), "suggest", SuggestConfig)


def build_suggest(
    workspace: Workspace,
    build: ArtifactBuild,
    config: SuggestConfig | None = None,
    *,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Fit the suggester on the workspace store and write ``<build>/suggest``; return metrics.

    Query vectors come from ``<build>/embeddings`` when the embeddings stage ran first (in the
    same build or an earlier one, which the staging copy inherits).
    """
    cfg = config or suggest_config(workspace)
    vectors = read_query_vectors(build.path)
    metrics: dict[str, Any] = {}
    with workspace.connect(read_only=True) as con:
        searches = count_searches(con)
        if not searches:  # a click log: nothing to complete, and an empty index serves nothing
            return {"skipped": SKIP_NO_SEARCHES}
        if evaluate and searches < MIN_EVAL_SEARCHES:
            metrics["skipped.eval"] = (
                f"only {searches} searches; need >= {MIN_EVAL_SEARCHES} to hold some out")
        elif evaluate:
            t0 = time.perf_counter()
            metrics.update(holdout_evaluate(con, cfg, query_vectors=vectors))
            metrics["eval_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = QuerySuggester(cfg).fit(con, query_vectors=vectors)
        metrics["fit_s"] = time.perf_counter() - t0
    model.save(build.component(COMPONENT))
    metrics.update({k if k.startswith("order_") else f"n_{k}": v
                    for k, v in model.fit_info_.items()})
    metrics["index_mb"] = model.completer_.nbytes / 2**20
    return metrics


def load_suggest(artifact_dir: Path) -> QuerySuggester:
    """The suggester of an artifact version (what the server loads at startup)."""
    return QuerySuggester.load(artifact_dir / COMPONENT)
