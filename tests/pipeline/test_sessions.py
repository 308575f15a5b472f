"""Sessionization on hand-made event sequences with known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from funnel.data.schema import EVENT_SCHEMA, ITEM_SCHEMA
from funnel.pipeline.sessions import build_sessions, read_sessions

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def store(events: list[tuple], items: list[tuple] = ()) -> duckdb.DuckDBPyConnection:
    """events: (event_id, minutes after T0, user, type, item, query, dwell_ms, market)."""
    rows = [
        {"event_id": e, "ts": T0 + timedelta(minutes=m), "user_id": u, "event_type": t,
         "item_id": i, "query": q, "dwell_ms": d, "market": mk}
        for e, m, u, t, i, q, d, mk in events
    ]
    con = duckdb.connect()
    con.register("ev", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))
    con.execute("CREATE TABLE events AS SELECT * FROM ev")
    item_rows = [{"item_id": i, "market": m} for i, m in items]
    con.register("it", pa.Table.from_pylist(item_rows, schema=ITEM_SCHEMA))
    con.execute("CREATE TABLE items AS SELECT * FROM it")
    return con


def sessions_of(con) -> list[dict]:
    return read_sessions(con).to_pylist()


def test_gap_exactly_at_threshold_keeps_the_session_and_one_ms_more_splits_it():
    con = store([
        ("a", 0, "u", "click", "i1", None, 1000, "paris"),
        ("b", 30, "u", "click", "i2", None, 2000, "paris"),  # exactly 30 min: same session
        ("c", 60.0 + 1 / 60_000, "u", "click", "i3", None, 3000, "paris"),  # 30 min + 1 ms
    ])
    summary = build_sessions(con, gap_minutes=30)
    got = sessions_of(con)
    assert [s["items"] for s in got] == [["i1", "i2"], ["i3"]]
    assert [s["dwell_ms"] for s in got] == [[1000, 2000], [3000]]
    assert summary["sessions"] == 2 and summary["clicks"] == 3


def test_out_of_order_rows_are_sorted_by_time_then_id():
    con = store([
        ("z", 10, "u", "click", "late", None, None, None),
        ("y", 0, "u", "click", "early", None, None, None),
        ("b", 5, "u", "click", "tie-b", None, None, None),
        ("a", 5, "u", "click", "tie-a", None, None, None),
    ])
    build_sessions(con)
    assert sessions_of(con)[0]["items"] == ["early", "tie-a", "tie-b", "late"]
    seq = con.execute("SELECT event_id, seq FROM session_events ORDER BY seq").fetchall()
    assert seq == [("y", 1), ("a", 2), ("b", 3), ("z", 4)]


def test_user_with_one_event_and_users_are_independent():
    con = store([
        ("a", 0, "solo", "click", "i1", None, None, None),
        ("b", 0, "u2", "click", "i2", None, None, None),
        ("c", 10, "u2", "click", "i3", None, None, None),
    ])
    build_sessions(con)
    got = {s["user_id"]: s for s in sessions_of(con)}
    assert got["solo"]["items"] == ["i1"] and got["solo"]["n_clicks"] == 1
    assert got["u2"]["items"] == ["i2", "i3"]
    assert got["solo"]["session_id"] == "solo#1"


def test_booking_without_clicks_is_a_booked_session_and_last_booking_wins():
    con = store(
        [
            ("a", 0, "u", "booking", "i9", None, None, None),
            ("b", 300, "u", "click", "i1", None, None, None),
            ("c", 301, "u", "booking", "i1", None, None, None),
            ("d", 302, "u", "booking", "i2", None, None, None),
        ],
        items=[("i9", "rome"), ("i1", "oslo"), ("i2", "oslo")],
    )
    summary = build_sessions(con)
    first, second = sessions_of(con)
    assert (first["n_clicks"], first["items"], first["booked"], first["booked_item"]) == (
        0, [], True, "i9")
    assert first["market"] == "rome"  # from the item when the event has none
    assert (second["booked_item"], second["market"]) == ("i2", "oslo")
    assert summary["booked_sessions"] == 2


def test_impressions_do_not_extend_sessions_and_queries_are_kept_in_order():
    con = store([
        ("s1", 0, "u", "search", None, "paris loft", None, "paris"),
        ("i1", 0, "u", "impression", "x", None, None, "paris"),
        ("c1", 1, "u", "click", "x", None, None, "paris"),
        ("i2", 20, "u", "impression", "y", None, None, "paris"),  # passive: not a bridge
        ("s2", 40, "u", "search", None, "paris villa", None, "paris"),
        ("s3", 41, "u", "search", None, "paris villa pool", None, "paris"),
    ])
    build_sessions(con)
    got = sessions_of(con)
    assert [s["queries"] for s in got] == [["paris loft"], ["paris villa", "paris villa pool"]]
    assert con.execute("SELECT count(*) FROM session_events").fetchall()[0][0] == 4


def test_gap_is_configurable_and_validated():
    con = store([
        ("a", 0, "u", "click", "i1", None, None, None),
        ("b", 10, "u", "click", "i2", None, None, None),
    ])
    build_sessions(con, gap_minutes=5)
    assert len(sessions_of(con)) == 2
    with pytest.raises(ValueError, match="gap_minutes"):
        build_sessions(con, gap_minutes=0)
