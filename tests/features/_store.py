"""A small hand-made event store in the contract schemas (in-memory DuckDB)."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa

from funnel.data.schema import EVENT_SCHEMA, ITEM_SCHEMA

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ts(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def items_table(n_items: int = 12) -> pa.Table:
    rows = {
        "item_id": [f"i{k}" for k in range(n_items)],
        "title": [f"item {k}" for k in range(n_items)],
        "category": [f"c{k % 3}" for k in range(n_items)],
        "brand": [f"b{k % 4}" for k in range(n_items)],
        "market": [f"m{k % 2}" for k in range(n_items)],
        "price": [10.0 + k for k in range(n_items)],
        "bid": [0.1 * (k % 5) for k in range(n_items)],
        "attributes": ["{}"] * n_items,
        "created_at": [T0] * n_items,
    }
    return pa.Table.from_pydict(rows, schema=ITEM_SCHEMA)


class EventLog:
    """Builds an events table row by row."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, minute: float, user: str, kind: str, item: str | None = None, *,
            request: str | None = None, position: int | None = None,
            dwell_ms: int | None = None, query: str | None = None) -> None:
        self.rows.append({
            "event_id": f"e{len(self.rows):05d}", "ts": ts(minute), "user_id": user,
            "event_type": kind, "item_id": item, "query": query, "request_id": request,
            "position": position, "market": None, "price": None, "dwell_ms": dwell_ms,
        })

    def table(self) -> pa.Table:
        cols = {f.name: [r[f.name] for r in self.rows] for f in EVENT_SCHEMA}
        return pa.Table.from_pydict(cols, schema=EVENT_SCHEMA)


def random_log(n_requests: int = 60, seed: int = 0, n_items: int = 12) -> EventLog:
    """Users search, see 5 items, click some (with dwell), sometimes book."""
    rng = np.random.default_rng(seed)
    log = EventLog()
    for r in range(n_requests):
        user = f"u{rng.integers(0, 5)}"
        minute = float(r * 7 + rng.integers(0, 3))
        req = f"r{r}"
        log.add(minute, user, "search", query="beach house", request=req)
        shown = rng.choice(n_items, size=5, replace=False)
        for pos, item in enumerate(shown, start=1):
            log.add(minute, user, "impression", f"i{item}", request=req, position=pos)
        for pos, item in enumerate(shown, start=1):
            if rng.random() < 0.35:
                log.add(minute + pos * 0.5, user, "click", f"i{item}", request=req,
                        position=pos, dwell_ms=int(rng.integers(5_000, 200_000)))
                if rng.random() < 0.3:
                    log.add(minute + pos * 0.5 + 2, user, "booking", f"i{item}", request=req)
    return log


def connect(events: pa.Table, items: pa.Table | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("ev_arrow", events)
    con.register("it_arrow", items if items is not None else items_table())
    con.execute("CREATE TABLE events AS SELECT * FROM ev_arrow")
    con.execute("CREATE TABLE items AS SELECT * FROM it_arrow")
    con.unregister("ev_arrow")
    con.unregister("it_arrow")
    return con
