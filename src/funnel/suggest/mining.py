"""Query-log mining: searches from the event store, their outcomes, and per-query statistics.

A search's outcome is the clicks and bookings attributed to it: events carrying its
``request_id``, otherwise the user's next actions within ``attribution_minutes`` before their
next search. A query's score is its time-decayed frequency times its downstream quality
(smoothed click-through and booking rate relative to the log's average), so a popular query
that never leads anywhere sinks below a slightly rarer one that converts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow.compute as pc

from funnel._checks import positive_float, positive_int, validate_params
from funnel.exceptions import ModelFitError
from funnel.pipeline.dialect import DUCKDB
from funnel.pipeline.run import pipeline_tables
from funnel.pipeline.stages import PipelineConfig, searches_sql
from funnel.suggest.normalize import BlockList, normalize_query


@dataclass(frozen=True)
class MiningConfig:
    """How searches become suggestible queries."""

    half_life_days: float = 14.0
    min_count: int = 2
    min_users: int = 1
    attribution_minutes: float = 30.0
    session_gap_minutes: float = 30.0
    smoothing: float = 20.0
    booking_weight: float = 3.0
    block_terms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_params(
            vars(self),
            {
                "half_life_days": (positive_float, "a float > 0 (days)"),
                "min_count": (positive_int, "a positive int"),
                "min_users": (positive_int, "a positive int"),
                "attribution_minutes": (positive_float, "a float > 0 (minutes)"),
                "session_gap_minutes": (positive_float, "a float > 0 (minutes)"),
                "smoothing": (positive_float, "a float > 0 (pseudo-searches)"),
                "booking_weight": (lambda v: isinstance(v, int | float) and v >= 0,
                                   "a float >= 0"),
            },
        )


@dataclass
class Searches:
    """One row per search event, in (user, time) order; ``text`` is normalized."""

    user: np.ndarray  # (n,) object str
    ts_ms: np.ndarray  # (n,) int64
    text: np.ndarray  # (n,) object str
    market: np.ndarray  # (n,) object str | None
    clicks: np.ndarray  # (n,) int64
    bookings: np.ndarray  # (n,) int64
    clicked: list[list[str]]  # clicked item ids per search

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def sessions(self, gap_minutes: float) -> list[np.ndarray]:
        """Row indices of each search session (same user, gaps of at most ``gap_minutes``)."""
        if len(self) == 0:
            return []
        gap = gap_minutes * 60_000.0
        new_user = np.ones(len(self), dtype=bool)
        new_user[1:] = self.user[1:] != self.user[:-1]
        breaks = new_user.copy()
        breaks[1:] |= np.diff(self.ts_ms) > gap
        starts = np.flatnonzero(breaks)
        return np.split(np.arange(len(self)), starts[1:])

    def take(self, rows: np.ndarray) -> Searches:
        """The searches at ``rows`` (kept in the given order)."""
        return Searches(self.user[rows], self.ts_ms[rows], self.text[rows], self.market[rows],
                        self.clicks[rows], self.bookings[rows],
                        [self.clicked[int(r)] for r in rows])

    def previous_queries(self, gap_minutes: float) -> list[str]:
        """Each search's previous query in its session ("" for a session's first search)."""
        out = [""] * len(self)
        for rows in self.sessions(gap_minutes):
            for a, b in zip(rows[:-1].tolist(), rows[1:].tolist(), strict=True):
                out[b] = str(self.text[a])
        return out


def load_searches(
    con: duckdb.DuckDBPyConnection,
    *,
    config: MiningConfig | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Searches:
    """Read search events with their attributed clicks/bookings from the ``events`` table, by
    the pipeline's ``searches`` stage (or a run's ready rows when the store holds them)."""
    cfg = config or MiningConfig()
    if since_ms is None and until_ms is None and "searches" in pipeline_tables(con):
        sql = "SELECT * FROM searches"  # a pipeline run's rows (funnel build --tables)
    else:
        where = ["TRUE"]
        if since_ms is not None:
            where.append(f"epoch_ms(ts) >= {int(since_ms)}")
        if until_ms is not None:
            where.append(f"epoch_ms(ts) < {int(until_ms)}")
        config_sql = PipelineConfig(attribution_minutes=cfg.attribution_minutes)
        sql = searches_sql(DUCKDB, config_sql, where=" AND ".join(where))
    table = con.sql(f"SELECT * FROM ({sql}) ORDER BY user_id, ts_ms, sid").to_arrow_table()
    raw = table.column("query").combine_chunks()
    enc = pc.dictionary_encode(raw)
    normalized = np.asarray([normalize_query(str(q)) for q in enc.dictionary.to_pylist()],
                            dtype=object)
    text = normalized[enc.indices.to_numpy(zero_copy_only=False)] if len(table) else \
        np.empty(0, dtype=object)
    return Searches(
        user=np.asarray(table.column("user_id").to_pylist(), dtype=object),
        ts_ms=table.column("ts_ms").to_numpy().astype(np.int64),
        text=text,
        market=np.asarray(table.column("market").to_pylist(), dtype=object),
        clicks=table.column("n_clicks").to_numpy().astype(np.int64),
        bookings=table.column("n_bookings").to_numpy().astype(np.int64),
        clicked=[list(v or []) for v in table.column("clicked").to_pylist()],
    )


@dataclass
class QueryLog:
    """Mined queries (id = position) with their statistics."""

    queries: list[str]
    count: np.ndarray  # raw searches
    users: np.ndarray  # distinct users
    decayed: np.ndarray  # time-decayed frequency
    ctr: np.ndarray  # smoothed share of searches with a click
    booking_rate: np.ndarray  # smoothed share of searches with a booking
    score: np.ndarray  # decayed x quality
    market: list[str | None]  # most searched market
    clicked_items: list[Counter[str]]  # item -> clicks from this query's searches
    index: dict[str, int] = field(default_factory=dict)
    n_blocked: int = 0
    n_below_support: int = 0

    def __post_init__(self) -> None:
        self.index = {q: i for i, q in enumerate(self.queries)}

    def __len__(self) -> int:
        return len(self.queries)


def mine_queries(searches: Searches, config: MiningConfig | None = None) -> QueryLog:
    """Aggregate searches into scored, filtered queries (block list, minimum support)."""
    cfg = config or MiningConfig()
    if len(searches) == 0:
        raise ModelFitError("no search events with a query to mine; ingest searches first")
    block = BlockList(cfg.block_terms)
    vocab, inv = np.unique(searches.text, return_inverse=True)
    inv = inv.astype(np.int64)
    nq = len(vocab)
    now = int(searches.ts_ms.max())
    age_days = (now - searches.ts_ms) / 86_400_000.0
    weight = np.power(0.5, age_days / cfg.half_life_days)
    count = np.bincount(inv, minlength=nq)
    decayed = np.bincount(inv, weights=weight, minlength=nq)
    clicked = np.bincount(inv, weights=(searches.clicks > 0).astype(float), minlength=nq)
    booked = np.bincount(inv, weights=(searches.bookings > 0).astype(float), minlength=nq)
    pairs = {(int(q), u) for q, u in zip(inv, searches.user, strict=True)}
    users = np.bincount(np.fromiter((q for q, _ in pairs), np.int64, len(pairs)), minlength=nq)

    ctr_g = clicked.sum() / max(count.sum(), 1)
    br_g = booked.sum() / max(count.sum(), 1)
    ctr = (clicked + cfg.smoothing * ctr_g) / (count + cfg.smoothing)
    br = (booked + cfg.smoothing * br_g) / (count + cfg.smoothing)
    base = ctr_g + cfg.booking_weight * br_g
    quality = (ctr + cfg.booking_weight * br) / base if base > 0 else np.ones(nq)
    score = decayed * quality

    blocked = np.array([(not q) or block.blocks(q) for q in vocab], dtype=bool)
    support = (count >= cfg.min_count) & (users >= cfg.min_users)
    keep = np.flatnonzero(~blocked & support)
    remap = np.full(nq, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))

    markets: list[Counter[str]] = [Counter() for _ in keep]
    items: list[Counter[str]] = [Counter() for _ in keep]
    for row, q in enumerate(inv):
        j = remap[q]
        if j < 0:
            continue
        if searches.market[row] is not None:
            markets[j][searches.market[row]] += 1
        for item in searches.clicked[row]:
            items[j][item] += 1
    return QueryLog(
        queries=[str(vocab[i]) for i in keep],
        count=count[keep],
        users=users[keep],
        decayed=decayed[keep],
        ctr=ctr[keep],
        booking_rate=br[keep],
        score=score[keep],
        market=[m.most_common(1)[0][0] if m else None for m in markets],
        clicked_items=items,
        n_blocked=int(blocked.sum()),
        n_below_support=int((~blocked & ~support).sum()),
    )


def query_sessions(
    searches: Searches, log: QueryLog, gap_minutes: float
) -> list[list[int]]:
    """Each search session as the ids of its mined queries in order (unknown ones dropped)."""
    out: list[list[int]] = []
    for rows in searches.sessions(gap_minutes):
        ids = [log.index[t] for t in searches.text[rows] if t in log.index]
        if len(ids) > 1:
            out.append(ids)
    return out


def user_interests(
    con: duckdb.DuckDBPyConnection,
    *,
    half_life_days: float = 14.0,
    top: int = 3,
    until_ms: int | None = None,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each user's top categories (decayed clicks/carts/bookings) and most active market."""
    where = f"AND epoch_ms(e.ts) < {int(until_ms)}" if until_ms is not None else ""
    rows = con.execute(
        f"""
        WITH x AS (
            SELECT e.user_id, i.category, coalesce(e.market, i.market) AS market,
                   epoch_ms(e.ts) AS t,
                   CASE e.event_type WHEN 'booking' THEN 3.0 WHEN 'add_to_cart' THEN 2.0
                        ELSE 1.0 END AS w
            FROM events e JOIN items i ON e.item_id = i.item_id
            WHERE e.event_type IN ('click', 'add_to_cart', 'booking') {where}
        ), now AS (SELECT max(t) AS t0 FROM x)
        SELECT user_id, category, market,
               sum(w * pow(0.5, (now.t0 - t) / 86400000.0 / {float(half_life_days)})) AS s
        FROM x, now GROUP BY ALL
        """
    ).fetchall()
    cats: dict[str, Counter[str]] = defaultdict(Counter)
    mkts: dict[str, Counter[str]] = defaultdict(Counter)
    for user, cat, mkt, s in rows:
        if cat is not None:
            cats[user][cat] += s
        if mkt is not None:
            mkts[user][mkt] += s
    top_cats = {u: [c for c, _ in cnt.most_common(top)] for u, cnt in cats.items()}
    top_mkt = {u: cnt.most_common(1)[0][0] for u, cnt in mkts.items()}
    return top_cats, top_mkt
