"""Sessionization: split each user's actions wherever two consecutive ones are over a gap apart.

Actions are every event except impressions (which are passive: they come with a search).
A gap of *exactly* ``gap_minutes`` keeps the session together; only a longer one splits it.
Ties in time are broken by ``event_id`` so the result is deterministic. A session that
contains a booking is a booked session; its booked item is the last one booked.

Two tables are (re)built:

``session_events(event_id, session_id, seq)``
    every action with its session and 1-based position in it;
``sessions(session_id, user_id, start_ts, end_ts, market, n_clicks, items, dwell_ms, queries,
booked_item, booked)``
    one row per session, with clicked items (and their dwell) and queries in time order.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from funnel._checks import positive_float, validate_params


@dataclass(frozen=True)
class SessionConfig:
    """The ``[sessions]`` table of funnel.toml."""

    gap_minutes: float = 30.0


SESSION_EVENTS_SQL = """
CREATE OR REPLACE TABLE session_events AS
WITH actions AS (
    SELECT event_id, user_id, ts
    FROM events
    WHERE event_type <> 'impression'
), marked AS (
    SELECT *,
        CASE WHEN lag(ts) OVER w IS NULL
                  OR epoch_ms(ts) - epoch_ms(lag(ts) OVER w) > {gap_ms}
             THEN 1 ELSE 0 END AS starts_session
    FROM actions
    WINDOW w AS (PARTITION BY user_id ORDER BY ts, event_id)
), numbered AS (
    SELECT *, sum(starts_session) OVER (
        PARTITION BY user_id ORDER BY ts, event_id ROWS UNBOUNDED PRECEDING
    ) AS session_no
    FROM marked
)
SELECT event_id,
       user_id || '#' || CAST(session_no AS VARCHAR) AS session_id,
       CAST(row_number() OVER (PARTITION BY user_id, session_no ORDER BY ts, event_id)
            AS INTEGER) AS seq
FROM numbered
"""

SESSIONS_SQL = """
CREATE OR REPLACE TABLE sessions AS
WITH e AS (
    SELECT s.session_id, s.seq, ev.user_id, ev.ts, ev.event_type, ev.item_id, ev.query,
           ev.dwell_ms, coalesce(ev.market, it.market) AS market
    FROM session_events s
    JOIN events ev USING (event_id)
    LEFT JOIN items it ON it.item_id = ev.item_id
)
SELECT session_id,
       any_value(user_id) AS user_id,
       min(ts) AS start_ts,
       max(ts) AS end_ts,
       coalesce(arg_max(market, seq) FILTER (WHERE event_type = 'booking'),
                mode(market) FILTER (WHERE market IS NOT NULL)) AS market,
       CAST(count(*) FILTER (WHERE event_type = 'click') AS INTEGER) AS n_clicks,
       coalesce(list(item_id ORDER BY seq) FILTER (WHERE event_type = 'click'),
                []::VARCHAR[]) AS items,
       coalesce(list(dwell_ms ORDER BY seq) FILTER (WHERE event_type = 'click'),
                []::BIGINT[]) AS dwell_ms,
       coalesce(list(query ORDER BY seq) FILTER (WHERE event_type = 'search'),
                []::VARCHAR[]) AS queries,
       arg_max(item_id, seq) FILTER (WHERE event_type = 'booking') AS booked_item,
       count(*) FILTER (WHERE event_type = 'booking') > 0 AS booked
FROM e
GROUP BY session_id
ORDER BY user_id, start_ts, session_id
"""


def build_sessions(con: duckdb.DuckDBPyConnection, gap_minutes: float = 30.0) -> dict[str, int]:
    """(Re)build ``session_events`` and ``sessions`` from ``events``; returns summary counts."""
    validate_params({"gap_minutes": gap_minutes}, {"gap_minutes": (positive_float, "a number > 0")})
    con.execute("SET TimeZone='UTC'")
    gap_ms = int(round(gap_minutes * 60_000))
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(SESSION_EVENTS_SQL.format(gap_ms=gap_ms))
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
