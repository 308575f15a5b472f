"""Ingest: validation, quarantine accounting, idempotence, atomicity (incl. a killed process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnel.data.ingest import ingest_file, quarantine_count, read_source
from funnel.data.schema import EVENT_TYPES
from funnel.data.store import EventStore
from funnel.exceptions import DataFileError
from funnel.workspace import Workspace

FIXTURE_OK = [HealthCheck.function_scoped_fixture]
HEADER = "event_id,ts,user_id,event_type,item_id,query,position,price,dwell_ms\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def events_in(ws: Workspace) -> pa.Table:
    with EventStore.open(ws.store_path, read_only=True) as store:
        return store.con.sql("SELECT * FROM events ORDER BY event_id").to_arrow_table()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


def test_valid_rows_stored_bad_rows_quarantined_with_row_field_reason(ws, tmp_path):
    src = write(
        tmp_path / "events.csv",
        HEADER
        + "e1,2026-01-01T10:00:00Z,u1,click,i1,,3,,5000\n"
        + "e2,1767261600,u1,search,,paris loft,,,\n"  # epoch seconds
        + "e3,1767261600123,u2,CLICK,i2,,,,\n"  # epoch ms, upper-case type
        + "e4,not-a-time,u2,click,i3,,,,\n"
        + "e5,2026-01-01T10:00:00Z,u3,teleport,i3,,,,\n"
        + "e6,2026-01-01T10:00:00Z,u3,click,,,,,\n"  # click without item
        + "e7,2026-01-01T10:00:00Z,u3,search,,,,,\n"  # search without query
        + "e8,2026-01-01T10:00:00Z,u3,booking,i4,,,-5,\n"  # negative price
        + "e9,2026-01-01T10:00:00Z,u3,click,i4,,-1,,\n"  # negative position
        + "e10,2026-01-01T10:00:00Z,u3,click,i4,,x,,\n"  # position not an int
        + "e11,2026-01-01T10:00:00Z,,click,i4,,,,\n"  # missing user
        + "e12,2026-01-01T10:00:00Z,u3,click,i4\n",  # wrong field count
    )
    report = ingest_file(ws, src)
    assert (report.read, report.stored, report.quarantined, report.duplicates) == (12, 3, 9, 0)
    stored = events_in(ws)
    assert stored.column("event_id").to_pylist() == ["e1", "e2", "e3"]
    assert stored.column("event_type").to_pylist() == ["click", "search", "click"]
    ts = [t.isoformat() for t in stored.column("ts").to_pylist()]
    assert ts == [
        "2026-01-01T10:00:00+00:00",
        "2026-01-01T10:00:00+00:00",
        "2026-01-01T10:00:00.123000+00:00",
    ]
    q = pq.read_table(report.quarantine_file).to_pylist()
    by_row = {r["source_row"]: r for r in q}
    assert set(by_row) == {4, 5, 6, 7, 8, 9, 10, 11, 12}
    assert by_row[4]["field"] == "ts" and "timestamp" in by_row[4]["reason"]
    assert by_row[5]["field"] == "event_type" and "unknown event type" in by_row[5]["reason"]
    assert by_row[6]["field"] == "item_id"
    assert by_row[7]["field"] == "query"
    assert by_row[8]["field"] == "price"
    assert by_row[9]["field"] == "position" and by_row[10]["field"] == "position"
    assert by_row[11]["field"] == "user_id" and "missing" in by_row[11]["reason"]
    assert "fields" in by_row[12]["reason"]
    assert all(r["source_file"] == str(src) for r in q)
    assert json.loads(by_row[5]["raw"])["event_type"] == "teleport"
    assert quarantine_count(ws) == 9


def test_reingest_is_idempotent_and_counts_duplicates(ws, tmp_path):
    src = write(tmp_path / "e.csv", HEADER + "a,2026-01-01T00:00:00Z,u,click,i,,,,\n" * 1
                + "b,2026-01-01T00:01:00Z,u,click,j,,,,\n")
    first = ingest_file(ws, src)
    second = ingest_file(ws, src)
    assert (first.stored, first.duplicates) == (2, 0)
    assert (second.stored, second.duplicates) == (0, 2)
    assert events_in(ws).num_rows == 2


def test_content_hash_ids_make_files_without_ids_idempotent(ws, tmp_path):
    # two identical rows are two real events (a double click), not one
    body = "ts,user_id,event_type,item_id\n" + "2026-01-01T00:00:00Z,u,click,i\n" * 2
    src = write(tmp_path / "noid.csv", body)
    assert ingest_file(ws, src).stored == 2
    assert ingest_file(ws, src).stored == 0
    ids = events_in(ws).column("event_id").to_pylist()
    assert len(set(ids)) == 2


def test_jsonl_and_parquet_and_items(ws, tmp_path):
    jl = tmp_path / "events.jsonl"
    jl.write_text(
        json.dumps({"event_id": "j1", "ts": 1767225600000, "user_id": 7, "event_type": "click",
                    "item_id": 42, "position": 1}) + "\n"
        + "{not json\n"
        + json.dumps({"event_id": "j2", "ts": "2026-01-01", "user_id": "7",
                      "event_type": "search", "query": "巴黎 公寓"}) + "\n"
    )
    rep = ingest_file(ws, jl)
    assert (rep.read, rep.stored, rep.quarantined) == (3, 2, 1)
    got = events_in(ws).to_pylist()
    assert got[0]["user_id"] == "7" and got[0]["item_id"] == "42"
    assert got[1]["query"] == "巴黎 公寓"
    items = pa.table({"item_id": ["i1", "i2"], "title": ["Loft", "Villa"], "price": [80.0, -1.0],
                      "attributes": ['{"rooms": 2}', "[1, 2]"]})
    pq.write_table(items, tmp_path / "items.parquet")
    rep = ingest_file(ws, tmp_path / "items.parquet")
    assert (rep.stored, rep.quarantined) == (1, 1)
    # updating an item replaces it; an identical re-ingest is a duplicate
    pq.write_table(items.slice(0, 1).set_column(2, "price", pa.array([90.0])),
                   tmp_path / "items2.parquet")
    rep = ingest_file(ws, tmp_path / "items2.parquet")
    assert (rep.stored, rep.duplicates) == (1, 0)
    with EventStore.open(ws.store_path, read_only=True) as store:
        assert store.con.execute("SELECT price FROM items").fetchall() == [(90.0,)]


def test_unreadable_and_unknown_files_raise_one_line_errors(ws, tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        ingest_file(ws, tmp_path / "missing.csv")
    odd = write(tmp_path / "data.bin", "x")
    with pytest.raises(DataFileError, match="--format"):
        ingest_file(ws, odd)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(DataFileError, match="unreadable as parquet"):
        ingest_file(ws, broken)
    with pytest.raises(DataFileError,
                       match="unknown --format .no-such-format.; expected one of parquet, csv"):
        ingest_file(ws, odd, fmt="no-such-format")


def test_ctrl_c_mid_file_leaves_store_unchanged(ws, tmp_path):
    ingest_file(ws, write(tmp_path / "a.csv", HEADER + "a,2026-01-01T00:00:00Z,u,click,i,,,,\n"))
    bad = write(tmp_path / "b.csv", HEADER + "b,2026-01-01T00:00:00Z,u,click,i,,,,\n"
                + "c,oops,u,click,i,,,,\n")

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_file(ws, bad, before_commit=interrupt)
    assert events_in(ws).column("event_id").to_pylist() == ["a"]
    assert quarantine_count(ws) == 0  # the quarantine file of the failed file is not kept
    assert not list(ws.quarantine_dir.glob("*.tmp-*"))


@pytest.mark.slow
def test_killed_process_mid_ingest_leaves_store_as_it_was(ws, tmp_path):
    ingest_file(ws, write(tmp_path / "a.csv", HEADER + "a,2026-01-01T00:00:00Z,u,click,i,,,,\n"))
    rows = "".join(f"k{i},2026-01-01T00:00:00Z,u{i % 50},click,i{i % 99},,,,\n"
                   for i in range(20_000))
    big = write(tmp_path / "big.csv", HEADER + rows)
    marker = tmp_path / "inside-transaction"
    script = f"""
import time
from pathlib import Path
from funnel.data.ingest import ingest_file
from funnel.workspace import Workspace
def hang():
    Path({str(marker)!r}).write_text("x")
    time.sleep(120)
ingest_file(Workspace.open({str(ws.root)!r}), Path({str(big)!r}), before_commit=hang)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "ingest process died before reaching the commit point"
            assert time.monotonic() < deadline, "ingest never reached the commit point"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert events_in(ws).column("event_id").to_pylist() == ["a"]
    # and the store still accepts the file afterwards
    assert ingest_file(ws, big).stored == 20_000


def test_generic_kind_detection(tmp_path):
    users = write(tmp_path / "people.csv", "user_id,attributes\nu1,{}\n")
    assert read_source(users).users is not None
    with pytest.raises(DataFileError, match="--kind"):
        read_source(write(tmp_path / "mystery.csv", "a,b\n1,2\n"))


event_rows = st.fixed_dictionaries(
    {
        "event_id": st.text("abcdef0123456789", min_size=1, max_size=12),
        "ts": st.integers(631152000, 4102444799),  # 1990..2099 in epoch seconds
        "user_id": st.text("uvwxyz123", min_size=1, max_size=6),
        "event_type": st.sampled_from(EVENT_TYPES),
        "item_id": st.text("ijk789", min_size=1, max_size=6),
        "query": st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and s),
        "position": st.integers(0, 10_000),
        "price": st.floats(0, 1e6, allow_nan=False),
    }
)
garbage = st.one_of(st.none(), st.text(max_size=8), st.integers(-10**15, 10**15),
                    st.floats(allow_nan=True))


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(rows=st.lists(event_rows, min_size=1, max_size=20, unique_by=lambda r: r["event_id"]))
def test_property_valid_rows_round_trip_exactly(tmp_path_factory, rows):
    ws = Workspace.init(tmp_path_factory.mktemp("ws"))
    path = tmp_path_factory.mktemp("src") / "events.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    report = ingest_file(ws, path)
    assert (report.stored, report.quarantined) == (len(rows), 0)
    got = {r["event_id"]: r for r in events_in(ws).to_pylist()}
    for r in rows:
        g = got[r["event_id"]]
        assert int(g["ts"].timestamp()) == r["ts"]
        assert (g["user_id"], g["event_type"], g["position"]) == (
            r["user_id"], r["event_type"], r["position"])
        assert g["price"] == pytest.approx(r["price"])
        assert g["query"] == r["query"]


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(rows=st.lists(st.dictionaries(
    st.sampled_from(["event_id", "ts", "user_id", "event_type", "item_id", "position", "price",
                     "dwell_ms", "junk"]), garbage), min_size=1, max_size=15))
def test_property_garbage_never_crashes_and_nothing_is_lost(tmp_path_factory, rows):
    ws = Workspace.init(tmp_path_factory.mktemp("ws"))
    path = tmp_path_factory.mktemp("src") / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        report = ingest_file(ws, path, kind="events")
    except DataFileError:
        return  # e.g. no column at all in any row: a clear file-level error is acceptable
    assert report.read == len(rows)
    assert report.stored + report.duplicates + report.quarantined == report.read
