"""A session simulator with planted structure, for testing and benchmarking embeddings.

The full marketplace generator (``funnel.data.synthetic``) models impressions, positions and
prices end to end; this one models only what the embedding objective sees, with every factor
known: items live in (market, category, price band) cells; a session stays in one market and
mostly in one category; accidental clicks have short dwell; a booked session books a high
*quality* item of its intended cell. Clicks follow attractiveness, bookings follow quality, so
only a model that learns from bookings (the paper's global context) can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class SessionSimConfig:
    n_sessions: int = 4000
    n_markets: int = 6
    n_categories: int = 5
    n_price_bands: int = 3
    items_per_cell: int = 8
    mean_clicks: float = 6.0
    p_same_category: float = 0.8
    p_accidental: float = 0.1
    p_book: float = 0.5
    queries_per_category: int = 4
    sessions_per_user: float = 4.0
    seed: int = 0


def simulate_sessions(config: SessionSimConfig) -> tuple[pa.Table, pa.Table]:
    """Return ``(sessions, items)`` tables in the contract column names."""
    rng = np.random.default_rng(config.seed)
    c = config
    cells = [(m, k, p) for m in range(c.n_markets) for k in range(c.n_categories)
             for p in range(c.n_price_bands)]
    item_ids: list[str] = []
    item_market: list[str] = []
    item_cat: list[str] = []
    item_price: list[float] = []
    cell_items: dict[tuple[int, int, int], np.ndarray] = {}
    for cell in cells:
        m, k, p = cell
        first = len(item_ids)
        for j in range(c.items_per_cell):
            item_ids.append(f"m{m}-c{k}-p{p}-{j}")
            item_market.append(f"m{m}")
            item_cat.append(f"c{k}")
            item_price.append(float(50.0 * (2.5**p) * rng.lognormal(0.0, 0.15)))
        cell_items[cell] = np.arange(first, len(item_ids))
    n_items = len(item_ids)
    attract = rng.lognormal(0.0, 0.6, n_items)  # drives clicks
    quality = rng.lognormal(0.0, 1.0, n_items)  # drives bookings only

    def pick(pool: np.ndarray, weights: np.ndarray) -> int:
        w = weights[pool]
        return int(pool[rng.choice(len(pool), p=w / w.sum())])

    market_pool = {m: np.concatenate([cell_items[(m, k, p)] for k in range(c.n_categories)
                                      for p in range(c.n_price_bands)])
                   for m in range(c.n_markets)}
    cat_pool = {(m, k): np.concatenate([cell_items[(m, k, p)] for p in range(c.n_price_bands)])
                for m in range(c.n_markets) for k in range(c.n_categories)}
    # users keep a home market and price band, and a favourite category (long-term interest)
    n_users = max(1, int(c.n_sessions / c.sessions_per_user))
    home = rng.integers(c.n_markets, size=n_users)
    band = rng.integers(c.n_price_bands, size=n_users)
    fav = rng.integers(c.n_categories, size=n_users)
    owner = rng.integers(n_users, size=c.n_sessions)
    rows_items, rows_dwell, rows_booked, rows_market, rows_queries = [], [], [], [], []
    for s_idx in range(c.n_sessions):
        u = int(owner[s_idx])
        m = int(home[u]) if rng.random() < 0.8 else int(rng.integers(c.n_markets))
        k = int(fav[u]) if rng.random() < 0.6 else int(rng.integers(c.n_categories))
        p = int(band[u]) if rng.random() < 0.8 else int(rng.integers(c.n_price_bands))
        n = 1 + int(rng.poisson(c.mean_clicks - 1))
        clicks: list[int] = []
        dwell: list[int] = []
        for _ in range(n):
            if rng.random() < c.p_accidental:
                clicks.append(int(rng.integers(n_items)))  # anywhere: a mis-click
                dwell.append(int(rng.integers(200, 2000)))
                continue
            if rng.random() < c.p_same_category:
                pool = cell_items[(m, k, p)] if rng.random() < 0.4 else cat_pool[(m, k)]
            else:
                pool = market_pool[m]
            clicks.append(pick(pool, attract))
            dwell.append(int(rng.lognormal(10.0, 0.7)))
        booked = None
        if rng.random() < c.p_book:
            b = pick(cell_items[(m, k, p)], quality**2)
            clicks.append(b)
            dwell.append(int(rng.lognormal(11.0, 0.5)))
            booked = item_ids[b]
        rows_items.append([item_ids[i] for i in clicks])
        rows_dwell.append(dwell)
        rows_booked.append(booked)
        rows_market.append(f"m{m}")
        q = rng.integers(c.queries_per_category, size=1 + int(rng.integers(3)))
        rows_queries.append([f"c{k} q{int(j)}" for j in q])
    start = np.datetime64("2026-01-01T00:00:00", "ms") + np.arange(c.n_sessions) * np.timedelta64(
        60_000, "ms"
    )
    sessions = pa.table({
        "session_id": pa.array([f"s{i}" for i in range(c.n_sessions)]),
        "user_id": pa.array([f"u{int(u)}" for u in owner]),
        "start_ts": pa.array(start, type=pa.timestamp("ms", tz="UTC")),
        "end_ts": pa.array(start + np.timedelta64(30_000, "ms"), type=pa.timestamp("ms", tz="UTC")),
        "items": pa.array(rows_items, type=pa.list_(pa.string())),
        "dwell_ms": pa.array(rows_dwell, type=pa.list_(pa.int64())),
        "queries": pa.array(rows_queries, type=pa.list_(pa.string())),
        "booked_item": pa.array(rows_booked, type=pa.string()),
        "booked": pa.array([b is not None for b in rows_booked]),
        "market": pa.array(rows_market),
    })
    items = pa.table({
        "item_id": item_ids, "market": item_market, "category": item_cat, "price": item_price,
    })
    return sessions, items
