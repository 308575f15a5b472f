"""The faster training-rows SQL gives exactly the rows of the frozen text it replaced.

``benchmarks/_training_rows_before.py`` holds the SQL as it was before issue #21 (item 3); the
current ``training_rows_sql`` must produce the same multiset of rows, with the same column
types, on generated marketplaces and on a hand-made log of the edge cases: ties at one
millisecond, clicks without a request id, a click just outside the click window and bookings
exactly at (and just past) the booking-window edge.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pytest

from funnel.data.schema import EVENT_SCHEMA, ITEM_SCHEMA
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.pipeline.dialect import DUCKDB
from funnel.pipeline.engines import DuckDBEngine
from funnel.pipeline.run import load_inputs
from funnel.pipeline.stages import PipelineConfig, training_rows_sql

BEFORE_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_training_rows_before.py"


def _before() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_training_rows_before", BEFORE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare(tables: dict[str, pa.Table], config: PipelineConfig | None = None) -> DuckDBEngine:
    """Materialize both texts as ``old`` and ``new``; assert equal rows and types."""
    config = config or PipelineConfig()
    engine = DuckDBEngine()
    load_inputs(engine, tables)
    n_old = engine.materialize("old", _before().training_rows_sql(DUCKDB, config))
    n_new = engine.materialize("new", training_rows_sql(DUCKDB, config))
    assert n_new == n_old
    types = "SELECT column_name, data_type FROM information_schema.columns " \
            "WHERE table_name = '{}' ORDER BY ordinal_position"
    assert engine.con.execute(types.format("new")).fetchall() == \
        engine.con.execute(types.format("old")).fetchall()
    only_old, only_new = engine.con.execute(
        "SELECT (SELECT count(*) FROM (SELECT * FROM old EXCEPT ALL SELECT * FROM new)), "
        "(SELECT count(*) FROM (SELECT * FROM new EXCEPT ALL SELECT * FROM old))"
    ).fetchall()[0]
    assert (only_old, only_new) == (0, 0)
    return engine


@pytest.mark.parametrize("n_events, seed", [(20_000, 1), (60_000, 5)])
def test_same_rows_as_the_frozen_sql_on_a_generated_marketplace(n_events, seed):
    market = generate_tables(MarketplaceConfig(n_events=n_events, seed=seed))
    engine = _compare(market)
    clicks, bookings = engine.con.execute(
        "SELECT count(*) FILTER (WHERE click), count(*) FILTER (WHERE booking) FROM new"
    ).fetchall()[0]
    assert clicks > 0 and bookings > 0


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN, HOUR = 60_000, 3_600_000


def _edge_log() -> dict[str, pa.Table]:
    ev = [  # (event_id, ms after T0, user, type, item, request_id)
        # ties: two users see i1 at the same ms, u1 clicks it in that same ms; u1 also sees
        # i2 (another category) and i3 (no item row) in the same request and ms
        ("a1", 0, "u1", "impression", "i1", "r1"),
        ("a2", 0, "u2", "impression", "i1", "r2"),
        ("a3", 0, "u1", "impression", "i2", "r1"),
        ("a4", 0, "u1", "impression", "i3", "r1"),
        ("c1", 0, "u1", "click", "i1", "r1"),
        ("c1b", 0, "u1", "click", "i1", "r1"),  # a double click in the same ms
        # a click without a request id matches the impression of any request
        ("c2", 5 * MIN, "u2", "click", "i1", None),
        # a click of another request does not
        ("a5", 10 * MIN, "u3", "impression", "i2", "r3"),
        ("c3", 11 * MIN, "u3", "click", "i2", "r9"),
        # an impression without a request id is matched by any request's click
        ("a6", 20 * MIN, "u4", "impression", "i1", None),
        ("c4", 21 * MIN, "u4", "click", "i1", "r4"),
        # a click 1 ms outside the 30-minute window, and one exactly at its edge
        ("a7", 1 * HOUR, "u5", "impression", "i2", "r5"),
        ("c5", 1 * HOUR + 30 * MIN + 1, "u5", "click", "i2", "r5"),
        ("a8", 2 * HOUR, "u6", "impression", "i2", "r6"),
        ("c6", 2 * HOUR + 30 * MIN, "u6", "click", "i2", "r6"),
        # bookings exactly at the 24-hour edge after the click (labelled) and 1 ms past it
        ("bk1", 2 * HOUR + 30 * MIN + 24 * HOUR, "u6", "booking", "i2", None),
        ("a9", 3 * HOUR, "u7", "impression", "i1", "r7"),
        ("c7", 3 * HOUR + 1, "u7", "click", "i1", "r7"),
        ("bk2", 3 * HOUR + 1 + 24 * HOUR + 1, "u7", "booking", "i1", None),
        # later impressions see all of the above as history, a booking in the same ms does not
        ("a10", 30 * HOUR, "u6", "impression", "i2", "r8"),
        ("a11", 30 * HOUR, "u6", "impression", "i1", "r8"),
        ("bk3", 30 * HOUR, "u6", "booking", "i1", None),
        ("cart", 30 * HOUR, "u6", "add_to_cart", "i1", None),
        ("s8", 30 * HOUR - 1, "u6", "search", None, "r8"),
    ]
    rows = [{"event_id": e, "ts": T0 + timedelta(milliseconds=t), "user_id": u,
             "event_type": k, "item_id": i, "request_id": r,
             "query": "red shoes" if k == "search" else None}
            for e, t, u, k, i, r in ev]
    items = [{"item_id": "i1", "category": "c1", "market": "m1", "price": 10.0},
             {"item_id": "i2", "category": "c2", "market": "m1", "price": 20.0}]
    return {"events": pa.Table.from_pylist(rows, schema=EVENT_SCHEMA),
            "items": pa.Table.from_pylist(items, schema=ITEM_SCHEMA)}


def test_same_rows_on_the_edge_cases():
    engine = _compare(_edge_log())
    got = {r[0]: r[1:] for r in engine.con.execute(
        "SELECT event_id, click, booking, item_imps_before, item_clicks_before, "
        "user_imps_before, user_cat_clicks_before, query FROM new").fetchall()}
    assert got["a1"][:2] == (True, False) and got["a2"][:2] == (True, False)
    assert got["a5"][0] is False and got["a6"][0] is True
    assert got["a7"][0] is False and got["a8"][:2] == (True, True)
    assert got["a9"][:2] == (True, False)
    # nothing at the impression's own ms counts: a2 sees neither a1 nor the clicks c1/c1b
    assert got["a2"][2:5] == (0, 0, 0)
    assert got["a10"][5] == 1 and got["a11"][6] == "red shoes"


def test_same_rows_with_other_windows():
    _compare(_edge_log(), PipelineConfig(click_window_minutes=0.5, booking_window_hours=1.0))
    _compare(generate_tables(MarketplaceConfig(n_events=20_000, seed=2)),
             PipelineConfig(click_window_minutes=5.0, booking_window_hours=2.0))
