"""Every batch stage of the pipeline, written once as SQL both DuckDB and Spark SQL run.

A :class:`Stage` names its input tables, its output table, the column its Parquet output is
partitioned by (``dt=YYYY-MM-DD/``) and a function that renders its SQL for a
:class:`~funnel.pipeline.dialect.Dialect`. Engines (``funnel.pipeline.engines``) only
materialize ``SELECT`` texts under a name; they never contain stage logic.

Stages and what they mean:

``session_events`` / ``sessions``
    sessionization (gap rule and tie-breaking as documented in ``funnel.pipeline.sessions``);
``corpora``
    embedding corpora: one row per session with at least one click (click sequence, booked item);
``covisit``
    co-visitation scores from the sessions' click lists, the one definition
    ``funnel.recall.covisit.CoVisitation`` fits with: click pairs within ``window`` positions
    score ``click_weight / distance``, clicks towards the booked item score ``booking_weight``,
    all decayed by session age with ``half_life_days``; plus the raw pair count ``n``;
``query_stats``
    per normalized query (lower case, trimmed, runs of white space collapsed): searches,
    distinct users, clicks on its results, bookings of items clicked from it later in the same
    session, first and last seen;
``searches``
    one row per search with the clicks and bookings attributed to it (its ``request_id``, else
    the user's next actions within ``attribution_minutes`` before their next search): what the
    query suggester mines (``funnel.suggest.mining.load_searches`` runs this text);
``training_rows``
    point-in-time ranking rows; ``funnel.features.training_set`` builds its rows from this text.
    One row per impression: click and booking labels (a click of the item by the user within
    ``click_window_minutes`` in the same request, a booking within ``booking_window_hours`` of
    that click) and item, user and user-category counters of events strictly before the
    impression's millisecond. Item counters come from one window over the item's events
    (impressions ordered first within a millisecond), user counters from per-millisecond
    aggregates; each joins the impression scan by event id or by a small aggregate's key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from funnel._checks import positive_float, positive_int, validate_params
from funnel.pipeline.dialect import Dialect


@dataclass(frozen=True)
class PipelineConfig:
    """Parameters of the batch stages (defaults match the single-machine stages)."""

    gap_minutes: float = 30.0
    window: int = 3
    half_life_days: float = 30.0
    click_weight: float = 1.0
    booking_weight: float = 3.0
    click_window_minutes: float = 30.0
    booking_window_hours: float = 24.0
    attribution_minutes: float = 30.0

    def __post_init__(self) -> None:
        validate_params(vars(self), {
            "gap_minutes": (positive_float, "a number > 0"),
            "window": (positive_int, "a positive int"),
            "half_life_days": (positive_float, "a number > 0"),
            "click_weight": (lambda v: isinstance(v, int | float) and v >= 0, "a number >= 0"),
            "booking_weight": (lambda v: isinstance(v, int | float) and v >= 0, "a number >= 0"),
            "click_window_minutes": (positive_float, "a number > 0"),
            "booking_window_hours": (positive_float, "a number > 0"),
            "attribution_minutes": (positive_float, "a number > 0"),
        })


@dataclass(frozen=True)
class Stage:
    """One batch stage: ``render(dialect, config)`` is a ``SELECT`` producing ``output``."""

    name: str
    inputs: tuple[str, ...]
    output: str
    render: Callable[[Dialect, PipelineConfig], str]
    partition_by: str | None = None
    """Timestamp column whose UTC date partitions the Parquet output (None: one file set)."""
    sort_key: tuple[str, ...] = field(default=())
    """Columns that identify a row (used to compare engines' outputs)."""


def session_events_sql(d: Dialect, c: PipelineConfig) -> str:
    # Two sorts, not three: lag and row_number share one window (user, time, event id); the
    # running session number and the row number where the session began share a second one,
    # ordered by that integer row number. seq = position in the user's actions minus the
    # position where the session started, plus one.
    gap_ms = int(round(c.gap_minutes * 60_000))
    ts = d.epoch_ms("ts")
    return f"""
WITH actions AS (
    SELECT event_id, user_id, {ts} AS ts_ms
    FROM events
    WHERE event_type <> 'impression'
), marked AS (
    SELECT event_id, user_id,
        CASE WHEN lag(ts_ms) OVER w IS NULL OR ts_ms - lag(ts_ms) OVER w > {gap_ms}
             THEN 1 ELSE 0 END AS starts_session,
        row_number() OVER w AS rn
    FROM actions
    WINDOW w AS (PARTITION BY user_id ORDER BY ts_ms, event_id)
), numbered AS (
    SELECT event_id, user_id, rn,
        sum(starts_session) OVER u AS session_no,
        max(CASE WHEN starts_session = 1 THEN rn END) OVER u AS start_rn
    FROM marked
    WINDOW u AS (PARTITION BY user_id ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT event_id,
       user_id || '#' || CAST(session_no AS STRING) AS session_id,
       CAST(rn - start_rn + 1 AS INTEGER) AS seq
FROM numbered
"""


def sessions_sql(d: Dialect, c: PipelineConfig) -> str:
    clicks, searches = "event_type = 'click'", "event_type = 'search'"
    return f"""
WITH actions AS (
    SELECT event_id, user_id, ts, event_type, item_id, query, dwell_ms, market
    FROM events WHERE event_type <> 'impression'
), e AS (
    SELECT s.session_id, s.seq, ev.user_id, ev.ts, ev.event_type, ev.item_id, ev.query,
           ev.dwell_ms, coalesce(ev.market, it.market) AS market
    FROM session_events s
    JOIN actions ev ON ev.event_id = s.event_id
    LEFT JOIN items it ON it.item_id = ev.item_id
), mk AS (
    SELECT session_id, market, count(*) AS n
    FROM e WHERE market IS NOT NULL GROUP BY session_id, market
), top_market AS (
    SELECT session_id, market FROM (
        SELECT session_id, market,
               row_number() OVER (PARTITION BY session_id ORDER BY n DESC, market) AS r
        FROM mk
    ) ranked WHERE r = 1
), agg AS (
    SELECT session_id,
           min(user_id) AS user_id,
           min(ts) AS start_ts,
           max(ts) AS end_ts,
           max_by(market, seq) FILTER (WHERE event_type = 'booking') AS booked_market,
           CAST(count(*) FILTER (WHERE {clicks}) AS INTEGER) AS n_clicks,
           {d.ordered_list("item_id", "seq", clicks, "VARCHAR")} AS items,
           {d.ordered_list("dwell_ms", "seq", clicks, "BIGINT")} AS dwell_ms,
           {d.ordered_list("query", "seq", searches, "VARCHAR")} AS queries,
           max_by(item_id, seq) FILTER (WHERE event_type = 'booking') AS booked_item,
           count(*) FILTER (WHERE event_type = 'booking') > 0 AS booked
    FROM e
    GROUP BY session_id
)
SELECT a.session_id, a.user_id, a.start_ts, a.end_ts,
       coalesce(a.booked_market, m.market) AS market,
       a.n_clicks, a.items, a.dwell_ms, a.queries, a.booked_item, a.booked
FROM agg a LEFT JOIN top_market m ON m.session_id = a.session_id
"""


def corpora_sql(d: Dialect, c: PipelineConfig) -> str:
    return """
SELECT session_id, user_id, start_ts, market, items, booked_item
FROM sessions
WHERE n_clicks > 0
"""


def covisit_sql(d: Dialect, c: PipelineConfig) -> str:
    # Reads only ``sessions`` (its ordered click list), so ``CoVisitation.fit`` runs this very
    # text on a sessions table alone: one definition for the build, the library and Spark.
    end_ms, ref_ms = d.epoch_ms("end_ts"), d.epoch_ms("max(end_ts)")
    return f"""
WITH ref AS (SELECT {ref_ms} AS t FROM sessions),
rw AS (
    SELECT s.session_id, s.booked_item, s.items,
           pow(0.5, CAST(ref.t - {end_ms} AS DOUBLE) / (86400000.0 * {float(c.half_life_days)!r}))
               AS w
    FROM sessions s CROSS JOIN ref
), u AS (
    SELECT session_id, w, booked_item, {d.positions("items", "pos", "item")}
    FROM rw
), pairs AS (
    SELECT a.item AS key, b.item AS item,
           a.w * {float(c.click_weight)!r} / abs(a.pos - b.pos) AS score
    FROM u a JOIN u b ON a.session_id = b.session_id
    WHERE abs(a.pos - b.pos) BETWEEN 1 AND {int(c.window)} AND a.item <> b.item
    UNION ALL
    SELECT item AS key, booked_item AS item, w * {float(c.booking_weight)!r} AS score
    FROM u WHERE booked_item IS NOT NULL AND item <> booked_item
)
SELECT key, item, sum(score) AS score, count(*) AS n FROM pairs GROUP BY key, item
"""


WHITESPACE = r"\s+"


def normalized_query(d: Dialect, expr: str) -> str:
    """Lower case, trimmed, white-space runs collapsed: the query key of ``query_stats``."""
    return f"lower(trim({d.regex_replace_all(expr, WHITESPACE, ' ')}))"


def query_stats_sql(d: Dialect, c: PipelineConfig) -> str:
    return f"""
WITH srch AS (
    SELECT {normalized_query(d, "query")} AS q, request_id, user_id, ts
    FROM events WHERE event_type = 'search' AND query IS NOT NULL
), nonempty AS (SELECT * FROM srch WHERE q <> ''),
req AS (
    SELECT request_id, min(q) AS q FROM nonempty WHERE request_id IS NOT NULL
    GROUP BY request_id
), clk AS (
    SELECT ev.event_id, ev.item_id, r.q, se.session_id, se.seq
    FROM events ev
    JOIN req r ON r.request_id = ev.request_id
    JOIN session_events se ON se.event_id = ev.event_id
    WHERE ev.event_type = 'click'
), bk AS (
    SELECT DISTINCT k.q, b.event_id
    FROM events b
    JOIN session_events sb ON sb.event_id = b.event_id
    JOIN clk k ON k.session_id = sb.session_id AND k.item_id = b.item_id AND k.seq < sb.seq
    WHERE b.event_type = 'booking'
), s_agg AS (
    SELECT q, count(*) AS searches, count(DISTINCT user_id) AS users,
           min(ts) AS first_seen, max(ts) AS last_seen
    FROM nonempty GROUP BY q
), c_agg AS (SELECT q, count(*) AS clicks FROM clk GROUP BY q),
b_agg AS (SELECT q, count(*) AS bookings FROM bk GROUP BY q)
SELECT s.q AS query, s.searches, s.users,
       coalesce(c.clicks, 0) AS clicks, coalesce(b.bookings, 0) AS bookings,
       s.first_seen, s.last_seen
FROM s_agg s
LEFT JOIN c_agg c ON c.q = s.q
LEFT JOIN b_agg b ON b.q = s.q
"""


def searches_sql(d: Dialect, c: PipelineConfig, where: str = "TRUE") -> str:
    """``where``: a condition on the events' ``ts`` (a time split of the search log)."""
    ms = d.epoch_ms
    window_ms = int(c.attribution_minutes * 60_000)
    return f"""
WITH ev AS (
    SELECT event_id, user_id, ts, event_type, item_id, request_id,
           CASE WHEN event_type = 'search' THEN event_id END AS sid
    FROM events
    WHERE event_type IN ('search', 'click', 'booking') AND {where}
      AND (event_type <> 'search' OR (query IS NOT NULL AND query <> ''))
), att AS (
    SELECT *, {d.last_non_null("sid")} OVER (
        PARTITION BY user_id ORDER BY ts, CASE WHEN event_type = 'search' THEN 0 ELSE 1 END,
        event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS prev_sid
    FROM ev
), s AS (
    SELECT event_id AS sid, user_id, ts, query, request_id, market
    FROM events
    WHERE event_type = 'search' AND query IS NOT NULL AND query <> '' AND {where}
), req AS (
    SELECT request_id, min(sid) AS sid FROM s WHERE request_id IS NOT NULL GROUP BY request_id
), link AS (
    SELECT a.event_id, a.event_type, a.item_id,
           COALESCE(r.sid, CASE WHEN {ms("a.ts")} - {ms("p.ts")} <= {window_ms}
                                THEN p.sid END) AS sid
    FROM att a
    LEFT JOIN req r ON a.request_id = r.request_id
    LEFT JOIN s p ON p.sid = a.prev_sid
    WHERE a.event_type <> 'search'
)
SELECT s.sid, s.user_id, s.ts, {ms("s.ts")} AS ts_ms, s.query, s.market,
       count(l.item_id) FILTER (WHERE l.event_type = 'click') AS n_clicks,
       count(l.item_id) FILTER (WHERE l.event_type = 'booking') AS n_bookings,
       {d.ordered_list("l.item_id", "l.event_id",
                       "l.event_type = 'click' AND l.item_id IS NOT NULL", "VARCHAR")} AS clicked
FROM s LEFT JOIN link l ON l.sid = s.sid
GROUP BY s.sid, s.user_id, s.ts, s.query, s.market
"""


def training_rows_sql(d: Dialect, c: PipelineConfig) -> str:
    # Every per-impression table is joined to one streaming scan of the impressions, keyed by
    # the impression itself (event id) or by a small aggregate: no wide CTE is materialized,
    # no 9M-row (key, ms) table is built and joined back (same rows, ~1.3x less CPU at 10M
    # events on DuckDB than the text frozen in benchmarks/_training_rows_before.py).
    click_ms = int(c.click_window_minutes * 60_000)
    book_ms = int(c.booking_window_hours * 3_600_000)
    ms = d.epoch_ms

    def before(count: str) -> str:  # running sum minus the row's own ms: strictly earlier
        return f"CAST((sum({count}) OVER w) - {count} AS INTEGER)"

    frame = "ORDER BY ts_ms ROWS UNBOUNDED PRECEDING"
    return f"""
WITH item_ev AS (
    SELECT event_id, item_id, {ms("ts")} AS ts_ms,
           CAST(CASE event_type WHEN 'impression' THEN 0 WHEN 'click' THEN 1 ELSE 2 END
                AS TINYINT) AS kind
    FROM events
    WHERE item_id IS NOT NULL AND event_type IN ('impression', 'click', 'booking')
), item_cnt AS (
    -- impressions sort first within a ms, so the running click/booking sums at an
    -- impression hold only earlier ms, and rank() - 1 counts every earlier event
    SELECT event_id, kind,
        (rank() OVER wr) - 1 AS n_before,
        sum(CASE WHEN kind = 1 THEN 1 ELSE 0 END) OVER w AS n_clk,
        sum(CASE WHEN kind = 2 THEN 1 ELSE 0 END) OVER w AS n_bk
    FROM item_ev
    WINDOW wr AS (PARTITION BY item_id ORDER BY ts_ms, kind),
           w AS (PARTITION BY item_id ORDER BY ts_ms, kind ROWS UNBOUNDED PRECEDING)
), item_pit AS (
    SELECT event_id, CAST(n_before - n_clk - n_bk AS INTEGER) AS item_imps_before,
           CAST(n_clk AS INTEGER) AS item_clicks_before,
           CAST(n_bk AS INTEGER) AS item_bookings_before
    FROM item_cnt WHERE kind = 0
), by_user_cat AS (
    SELECT e.user_id, it.category, {ms("e.ts")} AS ts_ms,
           count(CASE WHEN e.event_type = 'impression' THEN 1 END) AS n_imp,
           count(CASE WHEN e.event_type = 'click' THEN 1 END) AS n_clk,
           count(CASE WHEN e.event_type = 'booking' THEN 1 END) AS n_bk
    FROM events e LEFT JOIN items it ON it.item_id = e.item_id
    WHERE e.item_id IS NOT NULL AND e.event_type IN ('impression', 'click', 'booking')
    GROUP BY e.user_id, it.category, {ms("e.ts")}
), by_user AS (
    SELECT user_id, ts_ms, sum(n_imp) AS n_imp, sum(n_clk) AS n_clk, sum(n_bk) AS n_bk
    FROM by_user_cat GROUP BY user_id, ts_ms
), user_pit AS (
    SELECT user_id, ts_ms, {before("n_imp")} AS user_imps_before,
           {before("n_clk")} AS user_clicks_before, {before("n_bk")} AS user_bookings_before
    FROM by_user WINDOW w AS (PARTITION BY user_id {frame})
), cat_pit AS (
    SELECT user_id, category, ts_ms, {before("n_clk")} AS user_cat_clicks_before
    FROM by_user_cat WINDOW w AS (PARTITION BY user_id, category {frame})
), user_cat_pit AS (
    -- one join per impression for both the user and the user-category counters
    SELECT c.user_id, c.category, c.ts_ms, c.user_cat_clicks_before, u.user_imps_before,
           u.user_clicks_before, u.user_bookings_before
    FROM cat_pit c JOIN user_pit u ON u.user_id = c.user_id AND u.ts_ms = c.ts_ms
), srch AS (
    SELECT request_id, min(query) AS query
    FROM events WHERE event_type = 'search' AND request_id IS NOT NULL GROUP BY request_id
), clicked AS (
    SELECT i.event_id, min(i.user_id) AS user_id, min(i.item_id) AS item_id,
           min({ms("c.ts")}) AS click_ms
    FROM events i JOIN events c
      ON c.user_id = i.user_id AND c.item_id = i.item_id AND {ms("c.ts")} >= {ms("i.ts")}
     AND {ms("c.ts")} <= {ms("i.ts")} + {click_ms}
     AND (c.request_id = i.request_id OR c.request_id IS NULL OR i.request_id IS NULL)
    WHERE i.event_type = 'impression' AND c.event_type = 'click'
    GROUP BY i.event_id
), labels AS (
    SELECT k.event_id, count(b.event_id) > 0 AS booking
    FROM clicked k LEFT JOIN events b
      ON b.event_type = 'booking' AND b.user_id = k.user_id AND b.item_id = k.item_id
     AND {ms("b.ts")} >= k.click_ms AND {ms("b.ts")} <= k.click_ms + {book_ms}
    GROUP BY k.event_id
)
SELECT i.event_id, i.ts, i.user_id, i.item_id, i.request_id,
       coalesce(i.request_id, i.user_id || '@' || CAST({ms("i.ts")} AS STRING)) AS group_id,
       CAST(coalesce(i.position, 0) AS BIGINT) AS position,
       coalesce(i.market, it.market) AS market, it.category, it.brand, it.title,
       coalesce(i.price, it.price) AS price, it.bid,
       coalesce(i.query, s.query, '') AS query,
       CAST(pi.item_imps_before AS BIGINT) AS item_imps_before,
       CAST(pi.item_clicks_before AS BIGINT) AS item_clicks_before,
       CAST(pi.item_bookings_before AS BIGINT) AS item_bookings_before,
       CAST(coalesce(u.user_imps_before, 0) AS BIGINT) AS user_imps_before,
       CAST(coalesce(u.user_clicks_before, 0) AS BIGINT) AS user_clicks_before,
       CAST(coalesce(u.user_bookings_before, 0) AS BIGINT) AS user_bookings_before,
       CAST(coalesce(u.user_cat_clicks_before, 0) AS BIGINT) AS user_cat_clicks_before,
       (l.event_id IS NOT NULL) AS click,
       coalesce(l.booking, false) AS booking
FROM events i
LEFT JOIN items it ON it.item_id = i.item_id
LEFT JOIN srch s ON s.request_id = i.request_id
LEFT JOIN user_cat_pit u ON u.user_id = i.user_id AND u.ts_ms = {ms("i.ts")}
    AND u.category IS NOT DISTINCT FROM it.category
LEFT JOIN labels l ON l.event_id = i.event_id
LEFT JOIN item_pit pi ON pi.event_id = i.event_id
WHERE i.event_type = 'impression' AND i.item_id IS NOT NULL
"""


STAGES: Mapping[str, tuple[Stage, ...]] = {
    "sessions": (
        Stage("sessions", ("events",), "session_events", session_events_sql, None, ("event_id",)),
        Stage("sessions", ("events", "items", "session_events"), "sessions", sessions_sql,
              "start_ts", ("session_id",)),
    ),
    "corpora": (
        Stage("corpora", ("sessions",), "corpora", corpora_sql, "start_ts", ("session_id",)),
    ),
    "covisit": (
        Stage("covisit", ("sessions",), "covisit", covisit_sql,
              None, ("key", "item")),
    ),
    "query_stats": (
        Stage("query_stats", ("events", "session_events"), "query_stats", query_stats_sql,
              None, ("query",)),
    ),
    "searches": (
        Stage("searches", ("events",), "searches", searches_sql, "ts", ("sid",)),
    ),
    "training_set": (
        Stage("training_set", ("events", "items"), "training_rows", training_rows_sql, "ts",
              ("event_id",)),
    ),
}
"""Stage groups in dependency order; ``funnel pipeline run --stages`` picks among the keys."""

STAGE_NAMES = tuple(STAGES)
DEPENDS: Mapping[str, tuple[str, ...]] = {
    "sessions": (), "corpora": ("sessions",), "covisit": ("sessions",),
    "query_stats": ("sessions",), "searches": (), "training_set": (),
}


def plan(names: list[str] | tuple[str, ...]) -> list[Stage]:
    """The stages to run for ``names``, dependencies first, each once."""
    unknown = [n for n in names if n not in STAGES]
    if unknown or not names:
        raise ValueError(
            f"stages must be a non-empty subset of {list(STAGE_NAMES)}; got {list(names)!r}"
        )
    wanted: set[str] = set()

    def add(n: str) -> None:
        for dep in DEPENDS[n]:
            add(dep)
        wanted.add(n)

    for n in names:
        add(n)
    return [s for n in STAGE_NAMES if n in wanted for s in STAGES[n]]


def outputs(stages: list[Stage]) -> dict[str, Stage]:
    return {s.output: s for s in stages}


def describe() -> dict[str, Any]:
    """Stage -> (inputs, outputs), for ``--help`` and docs."""
    return {
        name: {"inputs": sorted({i for s in group for i in s.inputs}),
               "outputs": [s.output for s in group]}
        for name, group in STAGES.items()
    }
