"""Build every recall index from a workspace into an artifact, and load them back as a Merger.

Layout of ``<artifact>/recall/``::

    config.json      the RecallConfig used (quotas and timeout for the merger)
    vector/          VectorIndex over <artifact>/embeddings item vectors (if embeddings exist)
    lexical/         LexicalIndex (BM25 postings, npz) over item title / brand / category
    covisit/         CoVisitation from the sessions table
    popularity/      Popularity per market from events
    query_items/     QueryItems from search -> click events
    cooc/ sr/ sknn/  LastItemCooccurrence, SequentialRules, SessionKNN (session_rules) from the
                     sessions' item sequences (clicks, carts, bookings)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from funnel.artifacts import ArtifactBuild
from funnel.config import from_mapping, section, to_mapping
from funnel.data.store import EventStore
from funnel.exceptions import ArtifactError
from funnel.pipeline.run import pipeline_tables
from funnel.recall.covisit import CoVisitation
from funnel.recall.history import UserHistory
from funnel.recall.lexical import LexicalIndex
from funnel.recall.merger import Merger
from funnel.recall.popularity import Popularity
from funnel.recall.query_items import QueryItems
from funnel.recall.session_rules import (
    LastItemCooccurrence,
    SequentialRules,
    SessionKNN,
    read_item_sessions,
)
from funnel.recall.vector_index import VectorIndex
from funnel.recall.vector_source import VectorSource
from funnel.vectors import VectorTable, load_vectors
from funnel.workspace import Workspace

log = logging.getLogger(__name__)

SOURCES = ("vector", "lexical", "covisit", "popularity", "query_items", "cooc", "sr", "sknn",
           "history")

WEIGHT_HISTORY = 4.0
"""The history source's fusion weight, chosen inside the Taobao sample's training period (its
sessions split 80/20 again, the benchmark's test never seen): returning users' next-item
HR@20 on new items 0.199 without the source, 0.224 / 0.265 / 0.271 / 0.253 at weights
1 / 2 / 4 / 8. At 1 the user's own items rarely outrank what several crowd sources agree on."""

LEXICAL_SKIP = "no item titles; ingest an items file with titles to enable it"
"""Why a build without item titles has no lexical (BM25) source (``skipped.lexical``)."""


@dataclass(frozen=True)
class RecallConfig:
    """The ``[recall]`` table of funnel.toml."""

    vector_kind: str = "auto"
    metric: str = "cosine"
    hnsw_m: int = 32
    ef_search: int = 64
    covisit_window: int = 3
    covisit_half_life_days: float = 30.0
    booking_weight: float = 3.0
    popularity_half_life_days: float = 14.0
    quota_vector: int = 300
    quota_lexical: int = 300
    quota_covisit: int = 300
    quota_popularity: int = 200
    quota_query_items: int = 200
    sr_steps: int = 10
    sknn_k: int = 100
    sknn_sample_size: int = 500
    session_exclude_recent: bool = True
    """cooc / sr / sknn leave the request's recent items out (a next click is often a
    re-visit: on DIGINETICA keeping them lifts merged next-item HR@20 from 0.20 to 0.38)."""
    quota_cooc: int = 200
    quota_sr: int = 300
    quota_sknn: int = 300
    quota_history: int = 50
    """The user's own earlier items (``recall.history``); 0 turns the source off."""
    weight_history: float = WEIGHT_HISTORY
    """Its weight in the fusion (every other source has 1), see :data:`WEIGHT_HISTORY`."""
    timeout_ms: float = 200.0

    def quotas(self) -> dict[str, int]:
        return {name: int(getattr(self, f"quota_{name}")) for name in SOURCES}

    # One place builds each fitted source from these settings: the build, and the ranker's
    # out-of-fold copies of them (``recall.as_of``), which must match what is served.
    def popularity(self) -> Popularity:
        return Popularity(half_life_days=self.popularity_half_life_days)

    def covisitation(self) -> CoVisitation:
        return CoVisitation(window=self.covisit_window,
                            half_life_days=self.covisit_half_life_days,
                            booking_weight=self.booking_weight)

    def session_models(self) -> dict[str, LastItemCooccurrence | SequentialRules | SessionKNN]:
        """cooc / sr / sknn, unfitted (next-item sources of Ludewig & Jannach 2018)."""
        fresh = self.session_exclude_recent
        return {
            "cooc": LastItemCooccurrence(exclude_recent=fresh),
            "sr": SequentialRules(steps=self.sr_steps, exclude_recent=fresh),
            "sknn": SessionKNN(k=self.sknn_k, sample_size=self.sknn_sample_size,
                               exclude_recent=fresh),
        }

    def merger(self, sources: list[Any], *, timeout_s: float | None = None) -> Merger:
        """A merger over ``sources`` with these quotas; every source of an artifact answers
        from memory in well under a millisecond, so all run on the request's thread (a
        thread hand-off would cost more than the work)."""
        names = tuple(s.name for s in sources)
        quotas = {k: v for k, v in self.quotas().items() if k in names}
        timeout = self.timeout_ms / 1000 if timeout_s is None else timeout_s
        weights = {UserHistory.name: float(self.weight_history)}  # others: 1
        return Merger(sources, quotas=quotas, timeout_s=timeout, inline=names, weights=weights)


def _table(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()



def build_recall(
    workspace: Workspace,
    build: ArtifactBuild,
    config: RecallConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit every source on the workspace's store and write them to ``build``'s ``recall/``.

    Returns the figures to print (sizes and seconds per source). The vector index is built only
    when the build (inheriting ``current``) holds ``embeddings/item_*``; otherwise it is skipped.
    """
    config = config or section(workspace.config(), "recall", RecallConfig)
    step = progress or (lambda _name: None)
    metrics: dict[str, Any] = {}
    con = workspace.connect(read_only=True)
    try:
        items = _table(con, "SELECT item_id, title, brand, category, market FROM items")
        events = _table(
            con, "SELECT ts, user_id, event_type, item_id, query, market FROM events"
        )
        sessions = (
            _table(con, "SELECT session_id, end_ts, items, booked_item FROM sessions")
            if EventStore(con).has_table("sessions") else None
        )
        # a pipeline run's pairs (``funnel build --tables``), else the same SQL on the sessions
        covisit_pairs = (_table(con, "SELECT key, item, score FROM covisit")
                         if "covisit" in pipeline_tables(con) else None)
        item_sessions = (
            read_item_sessions(con) if EventStore(con).has_table("session_events") else None
        )
    finally:
        con.close()
    out = build.component("recall")
    (out / "config.json").write_text(json.dumps(to_mapping(config), indent=2))
    metrics["items"] = float(items.num_rows)

    step("lexical")
    if items.column("title").null_count < items.num_rows:
        t0 = time.perf_counter()
        LexicalIndex().fit(items).save(out / "lexical")
        metrics["lexical_build_s"] = time.perf_counter() - t0
    else:  # a click log without a catalog: BM25 over ids alone would find nothing
        metrics["skipped.lexical"] = LEXICAL_SKIP

    step("popularity")
    t0 = time.perf_counter()
    pop = config.popularity().fit(events)
    pop.save(out / "popularity")
    metrics["popularity_markets"] = float(len(pop.lists_))
    metrics["popularity_build_s"] = time.perf_counter() - t0

    step("query_items")
    t0 = time.perf_counter()
    qi = QueryItems(booking_weight=config.booking_weight).fit(events)
    qi.save(out / "query_items")
    metrics["query_items_queries"] = float(len(qi.lists_))
    metrics["query_items_build_s"] = time.perf_counter() - t0

    step("covisit")
    if sessions is not None and sessions.num_rows:
        t0 = time.perf_counter()
        cv = (config.covisitation().fit(sessions) if covisit_pairs is None
              else config.covisitation().fit_pairs(covisit_pairs))
        cv.save(out / "covisit")
        metrics["covisit_items"] = float(len(cv.neighbors_))
        metrics["covisit_pairs"] = float(len(cv.neighbors_.codes))
        metrics["covisit_build_s"] = time.perf_counter() - t0
    else:
        log.warning("no sessions table: co-visitation skipped (run 'funnel sessions' first)")
        metrics["covisit_items"] = 0.0

    step("session")  # next-item sources of Ludewig & Jannach (2018), served on recent items
    if item_sessions is not None and item_sessions[0]:
        seqs, ends = item_sessions
        for name, model in config.session_models().items():
            t0 = time.perf_counter()
            model.fit(seqs, times=ends).save(out / name)
            metrics[f"{name}_build_s"] = time.perf_counter() - t0
        metrics["session_sequences"] = float(len(seqs))
    else:
        log.warning("no session_events table: cooc / sr / sknn skipped (run 'funnel sessions')")
        metrics["session_sequences"] = 0.0

    step("vector")
    emb_dir = build.path / "embeddings"
    if (emb_dir / "item_vectors.npy").exists():
        t0 = time.perf_counter()
        table = load_vectors(emb_dir, "item")
        market_of = dict(
            zip(items.column("item_id").to_pylist(), items.column("market").to_pylist(),
                strict=True)
        )
        markets = [market_of.get(i) or "" for i in table.ids]
        index = VectorIndex(
            kind=config.vector_kind, metric=config.metric, hnsw_m=config.hnsw_m,
            ef_search=config.ef_search,
        ).fit(table.ids, table.vectors, {"market": markets})
        index.save(out / "vector")
        metrics["vector_items"] = float(len(index))
        metrics["vector_build_s"] = time.perf_counter() - t0
    else:
        log.warning("no %s: vector index skipped (run 'funnel embed' first)", emb_dir)
        metrics["vector_items"] = 0.0
    return metrics


@dataclass
class RecallBundle:
    """The loaded sources of one artifact and the merger over them."""

    sources: dict[str, Any]
    merger: Merger
    config: RecallConfig


def load_recall(artifact_dir: Path) -> RecallBundle:
    """Load ``<artifact_dir>/recall`` (and the item vectors) into ready sources + a Merger."""
    root = Path(artifact_dir) / "recall"
    cfg_path = root / "config.json"
    if not cfg_path.exists():
        raise ArtifactError(f"{cfg_path}: missing; run 'funnel index' first")
    config = from_mapping(RecallConfig, json.loads(cfg_path.read_text()), where=str(cfg_path))
    sources: dict[str, Any] = {}
    loaders: dict[str, Callable[[Path], Any]] = {
        "lexical": LexicalIndex.load, "popularity": Popularity.load,
        "query_items": QueryItems.load, "covisit": CoVisitation.load,
        "cooc": LastItemCooccurrence.load, "sr": SequentialRules.load, "sknn": SessionKNN.load,
    }
    for name, load in loaders.items():
        if (root / name).exists():
            sources[name] = load(root / name)
    if (root / "vector").exists():
        table: VectorTable = load_vectors(Path(artifact_dir) / "embeddings", "item")
        sources["vector"] = VectorSource(VectorIndex.load(root / "vector"), table)
    if config.quota_history > 0:  # fitted on nothing: the request carries the user's items
        sources[UserHistory.name] = UserHistory()
    return RecallBundle(sources=sources, merger=config.merger(list(sources.values())),
                        config=config)


__all__ = ["RecallBundle", "RecallConfig", "build_recall", "load_recall"]
