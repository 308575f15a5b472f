"""The ``embeddings`` artifact component: item, query and type vectors from the workspace.

``funnel embed`` and the lead's ``funnel build`` both call :func:`build_embeddings`, which reads
the ``sessions`` and ``items`` tables of the event store and writes ``<artifact>/embeddings/``:

- ``item_*``: trained items plus cold-start vectors for unseen catalog items (count 0 in
  ``item_meta.json``); ``query_*``: normalized query text; ``type_*``: ``user_type:...`` and
  ``item_type:...`` ids in one space (shared vector-table format, ``funnel.vectors``);
- ``item_types.json`` (item_id -> item type) and ``user_types.json`` (user_id -> user type
  after all their bookings), so other stages can compute ``cos(user_type, item_type)``;
- ``config.json``: the ``[embed]`` config used and the training metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from funnel.artifacts import ArtifactBuild
from funnel.config import section, to_mapping
from funnel.embed.evaluate import booked_rank_metrics, next_click_metrics, split_sessions
from funnel.embed.items import ItemEmbeddings, QueryEmbeddings
from funnel.embed.postprocess import all_but_the_top
from funnel.embed.trainer import warm_up
from funnel.embed.types import TypeEmbeddings, TypeRules
from funnel.exceptions import ConfigError, ModelFitError
from funnel.workspace import Workspace

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stage is "items", "queries" or "types"."""


@dataclass(frozen=True)
class EmbedConfig:
    """The ``[embed]`` table of funnel.toml (see :class:`ItemEmbeddings` for the meanings)."""

    dim: int = 32
    window: int = 5
    negatives: int = 5
    market_negatives: int = 5
    booked_context: bool = True
    epochs: int = 5
    learning_rate: float = 0.025
    sample: float = 0.001
    min_count: int = 1
    min_dwell_ms: int = 2000
    n_threads: int = 2
    seed: int = 0
    query_dim: int = 32
    query_epochs: int = 10
    type_dim: int = 16
    type_epochs: int = 20
    type_item_fields: tuple[str, ...] = ("market", "category", "price_band")
    type_user_fields: tuple[str, ...] = ("market", "price_band", "n_bookings")
    price_bands: int = 3
    eval_fraction: float = 0.0
    cold_start: bool = True
    center: bool = False
    """Subtract the mean item vector (all-but-the-top) before cold start and saving. Off by
    default: on 150k synthetic events it took the random-pair cosine from 0.975 to 0.02, but
    the funnel's paired personalization gain on bookings did not improve (-0.013 +- 0.029
    centred vs +0.023 +- 0.016 raw, one build each, same code); see funnel.evaluate.skew."""
    remove_components: int = 0
    """With ``center``: also remove this many top principal components."""

    @classmethod
    def from_workspace(cls, workspace: Workspace) -> EmbedConfig:
        return section(workspace.config(), "embed", cls)


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def read_tables(workspace: Workspace) -> tuple[pa.Table, pa.Table]:
    """The sessions (chronological) and items tables, with the fix when sessions are missing."""
    con = workspace.connect(read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables")
                 .fetchall()}
        if "sessions" not in names:
            raise ConfigError(
                f"{workspace.store_path}: no 'sessions' table; run 'funnel sessions' first"
            )
        sessions = _arrow(con, "SELECT * FROM sessions ORDER BY start_ts, session_id")
        items = _arrow(con, "SELECT item_id, market, category, brand, price FROM items") \
            if "items" in names else pa.table({"item_id": pa.array([], pa.string())})
    finally:
        con.close()
    return sessions, items


def bookings_from_sessions(sessions: pa.Table) -> pa.Table:
    """Booking events (user_id, ts, item_id) as the sessions table records them."""
    con = duckdb.connect()
    try:
        con.register("s", sessions)
        return _arrow(con, "SELECT user_id, end_ts AS ts, booked_item AS item_id FROM s "
                           "WHERE booked_item IS NOT NULL ORDER BY end_ts, session_id")
    finally:
        con.close()


def train_all(
    sessions: pa.Table, items: pa.Table, config: EmbedConfig, progress: Progress | None = None
) -> tuple[ItemEmbeddings, QueryEmbeddings | None, TypeEmbeddings | None, dict[str, float]]:
    """Train the three embeddings; metrics include held-out HR@10 when ``eval_fraction`` > 0."""
    def cb(stage: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda d, t: progress(stage, d, t))

    catalog = items if items.num_rows and "market" in items.column_names else None
    train, test = (split_sessions(sessions, config.eval_fraction) if config.eval_fraction > 0
                   else (sessions, None))
    metrics: dict[str, float] = {"sessions": float(sessions.num_rows)}
    warm_up()  # compile / load the numba cache first so item_seconds is training only
    t0 = time.perf_counter()
    item = ItemEmbeddings(
        config.dim, window=config.window, negatives=config.negatives,
        market_negatives=config.market_negatives, booked_context=config.booked_context,
        epochs=config.epochs, learning_rate=config.learning_rate, sample=config.sample,
        min_count=config.min_count, min_dwell_ms=config.min_dwell_ms,
        n_threads=config.n_threads, seed=config.seed,
    ).fit(train, catalog, callback=cb("items"))
    seconds = time.perf_counter() - t0
    metrics.update({
        "items": float(len(item.vocab_)), "train_sessions": float(item.n_sessions_),
        "item_seconds": seconds,
        "words_per_sec": item.n_tokens_ * config.epochs / max(seconds, 1e-9),
    })
    if test is not None:
        nc = next_click_metrics(item.vocab_, item.vectors_, test)
        metrics.update({"next_click_hr@10": nc["hr@10"], "next_click_mrr": nc["mrr"]})
        markets = {t: m for t, m in zip(item.vocab_, item.markets_, strict=True) if m}
        br = booked_rank_metrics(item.vocab_, item.vectors_, test, markets)
        if br["n"] > 0:
            metrics["booked_mean_rank@50"] = br["booked_mean_rank"]
    if config.center:
        item.vectors_ = all_but_the_top(item.vectors_, config.remove_components)
    if config.cold_start and catalog is not None:
        metrics["cold_start_items"] = float(len(item.fill_cold_start(catalog)))
    query: QueryEmbeddings | None = None
    if "queries" in sessions.column_names:
        try:
            query = QueryEmbeddings(config.query_dim, epochs=config.query_epochs,
                                    n_threads=config.n_threads, seed=config.seed
                                    ).fit(sessions, callback=cb("queries"))
            metrics["queries"] = float(len(query.vocab_))
        except ModelFitError:
            metrics["queries"] = 0.0  # no session has two queries: nothing to learn from
    types: TypeEmbeddings | None = None
    bookings = bookings_from_sessions(sessions)
    if catalog is not None and bookings.num_rows and "price" in catalog.column_names:
        rules = TypeRules(item_fields=config.type_item_fields,
                          user_fields=config.type_user_fields, price_bands=config.price_bands)
        try:
            types = TypeEmbeddings(config.type_dim, rules=rules, epochs=config.type_epochs,
                                   n_threads=config.n_threads, seed=config.seed
                                   ).fit(bookings, catalog, callback=cb("types"))
            metrics["types"] = float(len(types.vocab_))
        except ModelFitError:
            metrics["types"] = 0.0
    return item, query, types, metrics


def type_lookups(
    types: TypeEmbeddings, items: pa.Table, bookings: pa.Table
) -> tuple[dict[str, str], dict[str, str]]:
    """item_id -> item type, and user_id -> user type after all of the user's bookings.

    Written next to the ``type`` table so ranking and serving can look types up (for the
    ``cos(user_type, item_type)`` feature) without importing this stage.
    """
    rows = {r["item_id"]: r for r in items.to_pylist()}
    item_types = {item_id: types.item_type(r) for item_id, r in rows.items()}
    history: dict[str, list[dict[str, Any]]] = {}
    for user, item_id in zip(bookings.column("user_id").to_pylist(),
                             bookings.column("item_id").to_pylist(), strict=True):
        if item_id in rows:
            history.setdefault(user, []).append(rows[item_id])
    user_types = {user: types.user_type(booked) for user, booked in history.items()}
    return item_types, user_types


def build_embeddings(
    workspace: Workspace,
    build: ArtifactBuild,
    config: EmbedConfig | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Train from the workspace and write the ``embeddings`` component of ``build``."""
    config = config or EmbedConfig.from_workspace(workspace)
    sessions, items = read_tables(workspace)
    if sessions.num_rows == 0:
        raise ModelFitError(f"{workspace.store_path}: the 'sessions' table is empty")
    item, query, types, metrics = train_all(sessions, items, config, progress)
    out = build.component("embeddings")
    item.save(out)
    if query is not None:
        query.save(out)
    if types is not None:
        types.save(out)
        item_types, user_types = type_lookups(types, items, bookings_from_sessions(sessions))
        (out / "item_types.json").write_text(json.dumps(item_types, sort_keys=True))
        (out / "user_types.json").write_text(json.dumps(user_types, sort_keys=True))
    payload: dict[str, Any] = {"config": to_mapping(config), "metrics": metrics,
                               "tables": ["item"] + (["query"] if query else [])
                               + (["type"] if types else [])}
    (out / "config.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    return metrics
