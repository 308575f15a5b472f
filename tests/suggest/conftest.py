"""Hand-built event stores with known structure for the suggest tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from funnel.data.schema import EVENT_SCHEMA, ITEM_SCHEMA
from funnel.data.store import memory_store
from funnel.workspace import Workspace

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ts(days: float = 0.0, minutes: float = 0.0) -> dt.datetime:
    return T0 + dt.timedelta(days=days, minutes=minutes)


class StoreBuilder:
    """Append events (contract schema) and items, then materialize an in-memory DuckDB."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self._n = 0

    def item(self, item_id: str, *, title: str, category: str, brand: str, price: float,
             market: str = "m1") -> None:
        self.items.append({"item_id": item_id, "title": title, "category": category,
                           "brand": brand, "market": market, "price": price, "bid": 0.0,
                           "attributes": "{}", "created_at": T0})

    def event(self, user: str, kind: str, when: dt.datetime, *, item: str | None = None,
              query: str | None = None, request: str | None = None,
              market: str | None = "m1") -> str:
        self._n += 1
        eid = f"e{self._n:06d}"
        self.events.append({"event_id": eid, "ts": when, "user_id": user, "event_type": kind,
                            "item_id": item, "query": query, "request_id": request,
                            "position": None, "market": market, "price": None,
                            "dwell_ms": None})
        return eid

    def search(self, user: str, query: str, when: dt.datetime, *, clicks: list[str] = (),
               book: str | None = None, market: str | None = "m1") -> str:
        """A search with its clicks (same request id) and an optional booking 1 min later."""
        rid = f"r{self._n + 1:06d}"
        self.event(user, "search", when, query=query, request=rid, market=market)
        for j, item in enumerate(clicks):
            self.event(user, "click", when + dt.timedelta(seconds=10 + j), item=item,
                       request=rid, market=market)
        if book is not None:
            self.event(user, "booking", when + dt.timedelta(minutes=1), item=book,
                       market=market)
        return rid

    def tables(self) -> dict[str, pa.Table]:
        return {"events": pa.Table.from_pylist(self.events, schema=EVENT_SCHEMA),
                "items": pa.Table.from_pylist(self.items, schema=ITEM_SCHEMA)}

    def connect(self) -> duckdb.DuckDBPyConnection:
        return memory_store(self.tables())

    def write_into(self, workspace: Workspace) -> None:
        """Append the rows to a workspace's event store (its tables already exist)."""
        with workspace.connect() as con:
            for name, table in self.tables().items():
                con.register("t", table)
                con.execute(f"INSERT INTO {name} SELECT * FROM t")
                con.unregister("t")


@pytest.fixture
def store() -> StoreBuilder:
    return StoreBuilder()


def shop(store: StoreBuilder) -> StoreBuilder:
    """Two categories (shoes, phones) with brands and prices, and a planted search log.

    - "nike shoes" is searched 6x and clicked/booked; "nike socks" 8x and never clicked
      (popular but useless); "nokia phone" 4x with clicks.
    - sessions pair "nike shoes" -> "adidas shoes" three times.
    - user "shoefan" clicks shoes; user "phonefan" clicks phones.
    """
    for i in range(6):
        brand = "nike" if i < 3 else "adidas"
        store.item(f"s{i}", title=f"{brand} running shoes {i}", category="shoes", brand=brand,
                   price=50.0 + 20 * i)
        store.item(f"p{i}", title=f"{'nokia' if i < 2 else 'apple'} phone {i}",
                   category="phones", brand="nokia" if i < 2 else "apple", price=100.0 + 50 * i)
    for i in range(6):
        store.search(f"u{i}", "Nike Shoes", ts(days=i), clicks=["s0", "s3"],
                     book="s0" if i % 2 == 0 else None)
    for i in range(8):
        store.search(f"v{i}", "nike socks", ts(days=i, minutes=5))
    for i in range(4):
        store.search(f"w{i}", "nokia phone", ts(days=i, minutes=7), clicks=["p0"])
    for i in range(3):
        store.search(f"x{i}", "nike shoes", ts(days=10 + i), clicks=["s1"])
        store.search(f"x{i}", "adidas shoes", ts(days=10 + i, minutes=3), clicks=["s4"])
    store.search("x9", "adidas shoes", ts(days=13))
    for j in range(3):
        store.event("shoefan", "click", ts(days=14, minutes=j), item=f"s{j}")
        store.event("phonefan", "click", ts(days=14, minutes=j), item=f"p{j}")
    return store
