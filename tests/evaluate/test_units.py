"""Hand-computed checks of the evaluation's pieces: list metrics, the split, held-out cases."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.data.schema import EVENT_SCHEMA, TRUTH_SCHEMA
from funnel.evaluate.cases import held_out_cases
from funnel.evaluate.metrics import catalog_coverage, list_metrics, mean_ci
from funnel.evaluate.split import parse_split_date
from funnel.exceptions import ConfigError


def test_list_metrics_by_hand() -> None:
    # gains in the top 3: [0, 1, 0]; ideal for two targets: [1, 1]
    ndcg, rr, hit = list_metrics(["x", "a", "y", "b"], {"a", "b"}, k=3)
    assert ndcg == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert rr == 0.5 and hit == 1.0
    assert list_metrics(["a"], {"a"}, k=10) == (1.0, 1.0, 1.0)
    assert list_metrics(["x", "y"], {"a"}, k=10) == (0.0, 0.0, 0.0)
    assert list_metrics([], {"a"}, k=10) == (0.0, 0.0, 0.0)
    # a single target at rank r scores 1 / log2(r + 2)
    assert list_metrics(["x", "y", "z", "a"], {"a"}, k=10)[0] == pytest.approx(1 / math.log2(5))


def test_list_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="k: expected an int >= 1, got 0"):
        list_metrics(["a"], {"a"}, k=0)
    with pytest.raises(ValueError, match="targets: expected at least one"):
        list_metrics(["a"], set(), k=3)


def test_mean_ci_and_coverage() -> None:
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(1.96 * 1.0 / math.sqrt(3))
    assert all(math.isnan(x) for x in mean_ci([]))
    assert catalog_coverage([["a", "b"], ["b", "c"]], 10) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="n_items: expected an int >= 1, got 0"):
        catalog_coverage([], 0)


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_parse_split_date_round_trips(moment: datetime) -> None:
    moment = moment.replace(microsecond=(moment.microsecond // 1000) * 1000)
    expected = int(moment.replace(tzinfo=UTC).timestamp() * 1000)
    assert parse_split_date(moment.isoformat()) == expected
    assert parse_split_date(moment.replace(tzinfo=UTC).isoformat()) == expected


@given(st.text(alphabet="abcxyz/:. ", min_size=1, max_size=12))
def test_parse_split_date_rejects_text(text: str) -> None:
    with pytest.raises(ConfigError, match="--split-date: expected an ISO date"):
        parse_split_date(text)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _ev(eid: str, sec: float, user: str, kind: str, item: str | None = None, *,
        query: str | None = None, req: str | None = None, pos: int | None = None,
        dwell: int | None = None) -> dict:
    return {"event_id": eid, "ts": T0 + timedelta(seconds=sec), "user_id": user,
            "event_type": kind, "item_id": item, "query": query, "request_id": req,
            "position": pos, "market": "m", "price": None, "dwell_ms": dwell}


@pytest.fixture()
def tiny_store() -> duckdb.DuckDBPyConnection:
    rows = [
        _ev("e01", 0, "u1", "click", "A"),
        _ev("e02", 1000, "u1", "search", query="beach", req="r1"),
        _ev("e03", 1000, "u1", "impression", "A", req="r1", pos=0),
        _ev("e04", 1000, "u1", "impression", "B", req="r1", pos=1),
        _ev("e05", 1000, "u1", "impression", "C", req="r1", pos=2),
        _ev("e06", 1100, "u1", "click", "B", req="r1", dwell=70_000),
        _ev("e07", 1200, "u1", "booking", "B"),
        _ev("e08", 1300, "u1", "click", "C"),
        _ev("e09", 10, "u2", "click", "A"),
        _ev("e10", 2000, "u3", "click", "D"),
        _ev("e11", 2000 + 31 * 60, "u3", "click", "E"),
    ]
    events = pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
    truth = pa.Table.from_pylist(
        [{"event_id": e, "p_click": p} for e, p in (("e03", 0.1), ("e04", 0.2), ("e05", 0.3))],
        schema=TRUTH_SCHEMA)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.register("ev", events)
    con.register("tr", truth)
    con.execute("CREATE TABLE events AS SELECT * FROM ev")
    con.execute("CREATE TABLE truth AS SELECT * FROM tr")
    return con


def test_held_out_cases_by_hand(tiny_store: duckdb.DuckDBPyConnection) -> None:
    split = int((T0 + timedelta(seconds=1000)).timestamp() * 1000)
    held = held_out_cases(tiny_store, split)
    assert held.n_events == 9 and held.n_users == 2 and held.has_truth
    (search,) = held.cases["search"]
    assert (search.query, search.market, search.targets, search.request_id) == (
        "beach", "m", ("B",), "r1")
    assert search.state.clicks == ("A",)  # only what happened before the request
    assert search.impressions == (("A", 0, 0.1), ("B", 1, 0.2), ("C", 2, 0.3))
    assert held.requests == [search]
    (booking,) = held.cases["booking"]
    # the moment of a booking is the first click on the booked item, so it cannot leak
    assert booking.targets == ("B",) and booking.query == "beach"
    assert booking.ts_ms == split + 100_000 and booking.state.clicks == ("A",)
    # ... and its state is the one r1 was served with: before r1's own impressions (the
    # server ranked r1 before showing it; with them, every item of r1 looked already shown)
    assert booking.state == search.state and booking.state.shown == ()
    (nxt,) = held.cases["next_click"]  # u3's clicks each start a session: no case
    assert nxt.targets == ("C",) and nxt.user_id == "u1" and nxt.query == ""
    assert nxt.state.clicks == ("A", "B") and nxt.state.bookings == ("B",)
    assert [i for i, _ in nxt.state.long_clicks] == ["B"]


def test_sample_is_seeded(tiny_store: duckdb.DuckDBPyConnection) -> None:
    held = held_out_cases(tiny_store, 0)
    assert held.sample(None, 0) is held
    a, b = held.sample(1, 3), held.sample(1, 3)
    assert all(len(v) <= 1 for v in a.cases.values())
    assert a.cases == b.cases
    assert np.isfinite(len(a.requests))


def test_mean_random_cosine_spread_and_collapsed() -> None:
    from funnel.evaluate.stages import mean_random_cosine

    assert mean_random_cosine(np.eye(16)) == pytest.approx(0.0)  # distinct rows: orthogonal
    same = np.tile([[3.0, 4.0]], (10, 1))
    assert mean_random_cosine(same) == pytest.approx(1.0)
    assert math.isnan(mean_random_cosine(np.ones((1, 3))))


def test_default_split_ignores_stray_timestamps(tmp_path) -> None:
    from funnel.evaluate.split import choose_split
    from funnel.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    day = 86_400
    rows = [_ev("stray", 0, "u0", "click", "A")]  # one event 100 days before the log starts
    rows += [_ev(f"e{i:04d}", 100 * day + i * (10 * day / 2000), f"u{i % 7}", "click", "A")
             for i in range(2001)]
    con = ws.connect()
    con.register("ev", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))
    con.execute("INSERT INTO events SELECT * FROM ev")
    con.close()
    start = int(T0.timestamp() * 1000)
    split_day = (choose_split(ws) - start) / 1000 / day
    assert 107.9 <= split_day <= 108.1  # 80% of the real span (days 100-110), not of 0-110
    with pytest.raises(ConfigError, match="leaves no training or no held-out events"):
        choose_split(ws, start - 1)
    assert choose_split(ws, start + 1) == start + 1
