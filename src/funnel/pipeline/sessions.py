"""Sessionization: split each user's actions wherever two consecutive ones are over a gap apart.

Actions are every event except impressions (which are passive: they come with a search).
A gap of *exactly* ``gap_minutes`` keeps the session together; only a longer one splits it.
Ties in time are broken by ``event_id`` so the result is deterministic. A session that
contains a booking is a booked session; its booked item is the last one booked. Its market is
the booked event's market, else the most frequent market of its events (ties: the smallest).

The SQL is the shared stage definition of ``funnel.pipeline.stages`` (the same text runs on
Spark through ``funnel.pipeline.engines``); this module is its DuckDB event-store entry point.

Two tables are (re)built:

``session_events(event_id, session_id, seq)``
    every action with its session and 1-based position in it;
``sessions(session_id, user_id, start_ts, end_ts, market, n_clicks, items, dwell_ms, queries,
booked_item, booked)``
    one row per session, with clicked items (and their dwell) and queries in time order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

import duckdb
import pyarrow as pa

from funnel._checks import positive_float, validate_params
from funnel.data.store import memory_store
from funnel.pipeline.dialect import DUCKDB
from funnel.pipeline.stages import PipelineConfig, session_events_sql, sessions_sql


@dataclass(frozen=True)
class SessionConfig:
    """The ``[sessions]`` table of funnel.toml."""

    gap_minutes: float = 30.0

    @classmethod
    def of(cls, config: Mapping[str, object]) -> SessionConfig:
        """The ``[sessions]`` table of a parsed funnel.toml, checked, defaults filled in."""
        from funnel.config import section

        return section(config, "sessions", cls)


class SessionSummary(TypedDict):
    """What :func:`build_sessions` built (printed by ``funnel sessions``)."""

    sessions: int
    booked_sessions: int
    clicks: int
    users: int
    mean_clicks_per_session: float


def _create(table: str, select: str) -> str:
    return f"CREATE OR REPLACE TABLE {table} AS {select}"


SESSION_EVENTS_SQL = _create("session_events", session_events_sql(DUCKDB, PipelineConfig()))
"""The DuckDB rendering of the shared stage (default gap); ``build_sessions`` renders its own."""

SESSIONS_SQL = _create(
    "sessions", sessions_sql(DUCKDB, PipelineConfig()) + "ORDER BY user_id, start_ts, session_id"
)


def build_sessions(con: duckdb.DuckDBPyConnection, gap_minutes: float = 30.0) -> SessionSummary:
    """(Re)build ``session_events`` and ``sessions`` from ``events``; returns summary counts."""
    validate_params({"gap_minutes": gap_minutes}, {"gap_minutes": (positive_float, "a number > 0")})
    con.execute("SET TimeZone='UTC'")
    config = PipelineConfig(gap_minutes=float(gap_minutes))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(_create("session_events", session_events_sql(DUCKDB, config)))
        con.execute(SESSIONS_SQL)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE booked), coalesce(sum(n_clicks), 0), "
        "count(DISTINCT user_id), coalesce(avg(n_clicks), 0) FROM sessions"
    ).fetchall()[0]
    return {
        "sessions": int(row[0]),
        "booked_sessions": int(row[1]),
        "clicks": int(row[2]),
        "users": int(row[3]),
        "mean_clicks_per_session": float(row[4]),
    }


def read_sessions(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The ``sessions`` table as Arrow, in (user, start time) order."""
    return con.sql("SELECT * FROM sessions ORDER BY user_id, start_ts, session_id").to_arrow_table()


def sessionize(tables: Mapping[str, pa.Table], gap_minutes: float = 30.0) -> pa.Table:
    """The ``sessions`` of in-memory contract tables (``events``, optionally ``items``), in
    start-time order (what time-based train/test splits need), without a workspace."""
    con = memory_store(tables)
    try:
        build_sessions(con, gap_minutes=gap_minutes)
        return con.sql("SELECT * FROM sessions ORDER BY start_ts, session_id").to_arrow_table()
    finally:
        con.close()
