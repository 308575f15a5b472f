"""The shared stage SQL on DuckDB: equal to the single-machine definitions it replaces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from funnel.data.schema import EVENT_SCHEMA, ITEM_SCHEMA
from funnel.features.training_set import TrainingSetConfig, rows_sql
from funnel.pipeline.dialect import DUCKDB, Dialect
from funnel.pipeline.engines import DuckDBEngine
from funnel.pipeline.run import load_inputs, run_pipeline
from funnel.pipeline.stages import PipelineConfig, covisit_sql, plan
from funnel.recall._sql import run as recall_run
from funnel.recall.covisit import CoVisitation

from ._compare import rows

ALL = ["sessions", "corpora", "covisit", "query_stats", "searches", "training_set"]


@pytest.fixture(scope="module")
def duck(market) -> DuckDBEngine:
    engine = DuckDBEngine()
    load_inputs(engine, market)
    run_pipeline(engine, ALL)
    return engine


def test_covisit_stage_equals_a_hand_computation():
    """Two sessions, ten days apart: s1 clicks a, b, c and books c; s2 (the newest) clicks b, a.
    Window 1: only neighbours score, 1 / distance; clicks towards the booked item score 3.
    s1 is one half-life (10 days) old, so its pairs count 0.5."""
    t = datetime(2026, 1, 11, tzinfo=UTC)
    sessions = pa.table({
        "session_id": ["s1", "s2"], "end_ts": [t - timedelta(days=10), t],
        "items": [["a", "b", "c"], ["b", "a"]], "booked_item": ["c", None]})
    config = PipelineConfig(window=1, half_life_days=10.0)
    got = recall_run(covisit_sql(DUCKDB, config), {"sessions": sessions})
    scores = {(r["key"], r["item"]): (round(r["score"], 12), r["n"]) for r in got.to_pylist()}
    assert scores == {
        ("a", "b"): (0.5 + 1.0, 2), ("b", "a"): (0.5 + 1.0, 2),  # s1 at 0.5, s2 at 1
        ("b", "c"): (0.5 + 0.5 * 3, 2),  # a neighbour pair, and b -> the booked c
        ("c", "b"): (0.5, 1),
        ("a", "c"): (0.5 * 3, 1),  # only the booking pair: a and c are 2 apart
    }


def test_covisitation_fits_from_the_stage_output_as_from_sessions(duck):
    """The recall source fitted on sessions equals one fed the engine's covisit table."""
    sessions = duck.to_arrow("sessions")
    pairs = duck.to_arrow("covisit")
    assert pairs.num_rows > 1000
    a = CoVisitation().fit(sessions).neighbors_
    b = CoVisitation().fit_pairs(pairs).neighbors_
    assert a.keys == b.keys and a.items.tolist() == b.items.tolist()
    assert a.indptr.tolist() == b.indptr.tolist() and a.codes.tolist() == b.codes.tolist()
    assert a.scores.tolist() == pytest.approx(b.scores.tolist(), rel=1e-6)


def test_training_rows_match_the_rank_stage_rows_sql(duck, market):
    """The engine's Parquet output equals the rows the rank stage builds in process."""
    con = duck.con
    theirs = con.sql(rows_sql(TrainingSetConfig(click_window_minutes=30.0,
                                                booking_window_hours=24.0)))
    theirs = theirs.to_arrow_table()
    ours = duck.to_arrow("training_rows")
    assert ours.num_rows == theirs.num_rows == sum(
        1 for t, i in zip(market["events"]["event_type"].to_pylist(),
                          market["events"]["item_id"].to_pylist(), strict=True)
        if t == "impression" and i is not None
    )
    assert sorted(ours.column_names) == sorted(theirs.column_names)
    assert rows(ours, ("event_id",)) == rows(theirs.select(ours.column_names), ("event_id",))
    assert 0 < sum(ours["click"].to_pylist()) < ours.num_rows


def test_corpora_are_the_sessions_with_clicks(duck):
    s = duck.to_arrow("sessions").to_pylist()
    c = {r["session_id"]: r for r in duck.to_arrow("corpora").to_pylist()}
    with_clicks = [r for r in s if r["n_clicks"] > 0]
    assert len(c) == len(with_clicks) < len(s)
    for r in with_clicks:
        assert c[r["session_id"]]["items"] == r["items"]
        assert c[r["session_id"]]["booked_item"] == r["booked_item"]


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _engine(events: list[tuple]) -> DuckDBEngine:
    """events: (event_id, minutes after T0, user, type, item, query, request_id)."""
    ev = [{"event_id": e, "ts": T0 + timedelta(minutes=m), "user_id": u, "event_type": t,
           "item_id": i, "query": q, "request_id": r} for e, m, u, t, i, q, r in events]
    engine = DuckDBEngine()
    load_inputs(engine, {"events": pa.Table.from_pylist(ev, schema=EVENT_SCHEMA),
                         "items": ITEM_SCHEMA.empty_table()})
    return engine


def test_query_stats_on_a_hand_made_log():
    engine = _engine([
        ("s1", 0, "u1", "search", None, "  Red   Shoes ", "r1"),
        ("c1", 1, "u1", "click", "i1", None, "r1"),
        ("c2", 2, "u1", "click", "i2", None, "r1"),
        ("b1", 3, "u1", "booking", "i2", None, None),
        ("s2", 5, "u2", "search", None, "red shoes", "r2"),
        ("s3", 6, "u2", "search", None, "boots", "r3"),
        ("c3", 7, "u2", "click", "i3", None, "r3"),
        ("b2", 200, "u2", "booking", "i3", None, None),  # a later session: not credited
        ("s4", 9, "u3", "search", None, "   ", "r4"),  # empty after normalization: dropped
    ])
    run_pipeline(engine, ["query_stats"])
    got = {r["query"]: r for r in engine.to_arrow("query_stats").to_pylist()}
    assert set(got) == {"red shoes", "boots"}
    red, boots = got["red shoes"], got["boots"]
    assert (red["searches"], red["users"], red["clicks"], red["bookings"]) == (2, 2, 2, 1)
    assert (boots["searches"], boots["users"], boots["clicks"], boots["bookings"]) == (1, 1, 1, 0)
    assert red["first_seen"] == T0 and red["last_seen"] == T0 + timedelta(minutes=5)


def test_partitioned_parquet_round_trip(tmp_path: Path, market):
    src = DuckDBEngine()
    src.register_arrow("events", market["events"])
    src.write_parquet("events", tmp_path / "in" / "events", "ts")
    src.register_arrow("items", market["items"])
    src.write_parquet("items", tmp_path / "in" / "items", None)
    days = sorted(p.name for p in (tmp_path / "in" / "events").iterdir())
    assert len(days) > 1 and all(d.startswith("dt=") for d in days)
    engine = DuckDBEngine()
    load_inputs(engine, tmp_path / "in")
    assert rows(engine.to_arrow("events"), ("event_id",)) == rows(market["events"], ("event_id",))
    run_pipeline(engine, ["sessions"], out=tmp_path / "out")
    back = duckdb.sql(
        f"SELECT * EXCLUDE (dt) FROM read_parquet('{tmp_path}/out/sessions/**/*.parquet', "
        "hive_partitioning = true)"
    ).to_arrow_table()
    assert rows(back, ("session_id",)) == rows(engine.to_arrow("sessions"), ("session_id",))
    first = duckdb.sql(
        f"SELECT min(strftime(start_ts AT TIME ZONE 'UTC', '%Y-%m-%d')) = min(dt) "
        f"FROM read_parquet('{tmp_path}/out/sessions/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0][0]
    assert first


def test_plan_orders_dependencies_and_rejects_unknown_stages():
    assert [s.output for s in plan(["covisit"])] == ["session_events", "sessions", "covisit"]
    assert [s.output for s in plan(["training_set"])] == ["training_rows"]
    with pytest.raises(ValueError, match=r"stages must be a non-empty subset.*got \['nope'\]"):
        plan(["nope"])
    with pytest.raises(ValueError, match="non-empty"):
        plan([])


def test_config_and_dialect_validate_their_inputs():
    with pytest.raises(ValueError, match="window"):
        PipelineConfig(window=0)
    with pytest.raises(ValueError, match="engine must be one of .*got 'oracle'"):
        Dialect("oracle")


def test_missing_parquet_input_names_the_path(tmp_path: Path):
    from funnel.exceptions import DataFileError

    with pytest.raises(DataFileError, match="does not exist"):
        load_inputs(DuckDBEngine(), tmp_path / "nothing")
