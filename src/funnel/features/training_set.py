"""Point-in-time training sets from the DuckDB event store: one row per impression.

Labels: ``click`` (same user clicks the item in the same request, or within
``click_window_minutes`` when request ids are missing) and ``booking`` (a clicked impression
whose item the user books within ``booking_window_hours``). Features see only events strictly
before the impression's own timestamp: item and user counters come from SQL windows ending
one millisecond before, and the user's recent clicks/skips/long clicks/bookings are replayed in
time order through :func:`funnel.features.personalization.observe` (the function the server
uses), so a row never sees the future. Negatives can be downsampled at ``negative_rate``;
rankers undo it at prediction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from funnel._checks import positive_float, unit_interval, validate_params
from funnel.features.history import DEFAULT_HISTORY_LEN, HISTORY_COLUMNS, history_columns
from funnel.features.personalization import (
    FEATURE_NAMES,
    STATE_WINDOW,
    ItemVectorLookup,
    RecentActions,
    clip_state,
    observe,
    personalization_features,
)
from funnel.features.query_match import query_match_features
from funnel.pipeline.dialect import DUCKDB
from funnel.pipeline.run import pipeline_tables
from funnel.pipeline.stages import PipelineConfig, training_rows_sql


@dataclass(frozen=True)
class TrainingSetConfig:
    click_window_minutes: float = 30.0
    booking_window_hours: float = 24.0
    long_click_ms: int = 60_000
    negative_rate: float = 1.0
    recent_k: int = 10
    history_len: int = DEFAULT_HISTORY_LEN
    """Actions in the ``hist_*`` columns (:mod:`funnel.features.history`); a sequence
    ranker's ``history_len`` up to this sees at training what it sees at serving."""
    seed: int = 0

    def __post_init__(self) -> None:
        validate_params(
            vars(self),
            {
                "click_window_minutes": (positive_float, "a positive float"),
                "booking_window_hours": (positive_float, "a positive float"),
                "long_click_ms": (positive_float, "a positive number of ms"),
                "negative_rate": (lambda v: unit_interval(v) and v > 0, "a float in (0, 1]"),
                "recent_k": (lambda v: isinstance(v, int) and v > 0, "a positive int"),
                "history_len": (lambda v: isinstance(v, int) and v > 0, "a positive int"),
            },
        )


def rows_sql(config: TrainingSetConfig) -> str:
    """The point-in-time rows, in time order: the pipeline's one definition, DuckDB dialect.

    ``funnel.pipeline.stages.training_rows_sql`` is the same text Spark runs at scale, so the
    rows trained on here and there cannot drift apart.
    """
    pipeline_config = PipelineConfig(
        click_window_minutes=config.click_window_minutes,
        booking_window_hours=config.booking_window_hours,
    )
    return (
        f"SELECT * FROM ({training_rows_sql(DUCKDB, pipeline_config)}) "
        "ORDER BY ts, event_id"
    )


REPLAY_SQL = """
SELECT user_id, epoch_ms(ts) AS ts_ms, event_type, item_id, request_id, position, dwell_ms,
       event_id
FROM events
WHERE event_type IN ('impression', 'click', 'booking') AND item_id IS NOT NULL
ORDER BY user_id, ts, CASE WHEN event_type = 'impression' THEN 0 ELSE 1 END, event_id
"""


VectorsFor = Callable[[str | None], ItemVectorLookup]
"""``user_id -> vectors`` for that user's rows (out-of-fold vectors, ``rank.oof_vectors``)."""


def _replay(
    con: duckdb.DuckDBPyConnection,
    config: TrainingSetConfig,
    vectors: ItemVectorLookup | None,
    vectors_for: VectorsFor | None = None,
) -> dict[str, tuple[list[str], dict[str, float], dict[str, list[str]]]]:
    """Per impression event id: recent clicks, personalization features and the history
    columns (:func:`~funnel.features.history.history_columns`) as of its time.

    Events of one user at one timestamp are applied only after every impression at that
    timestamp has been scored, so nothing at or after an impression's time is visible to it.
    """
    ev = con.sql(REPLAY_SQL).to_arrow_table().to_pydict()
    out: dict[str, tuple[list[str], dict[str, float], dict[str, list[str]]]] = {}
    n = len(ev["event_id"])
    state: dict[str, RecentActions] = defaultdict(lambda: RecentActions(max_len=STATE_WINDOW))
    j = 0
    while j < n:
        user, ts = ev["user_id"][j], ev["ts_ms"][j]
        k = j
        while k < n and ev["user_id"][k] == user and ev["ts_ms"][k] == ts:
            k += 1
        recent = clip_state(state[user], config.recent_k)  # as the server cuts its state
        imps = [r for r in range(j, k) if ev["event_type"][r] == "impression"]
        if imps:
            cands = [ev["item_id"][r] for r in imps]
            lookup = vectors if vectors_for is None or vectors is None else vectors_for(user)
            feats = (
                personalization_features(cands, recent, lookup, now_ms=ts, profile=state[user])
                if lookup is not None else None
            )
            hist = history_columns(state[user], ts, config.history_len)  # the uncut state
            for pos, r in enumerate(imps):
                f = {} if feats is None else {name: float(feats[name][pos]) for name in feats}
                out[ev["event_id"][r]] = (list(recent.clicks), f, hist)
        recent = state[user]
        for r in range(j, k):
            recent = observe(
                recent, ev["event_type"][r], ev["item_id"][r], ts_ms=ts,
                dwell_ms=ev["dwell_ms"][r], request_id=ev["request_id"][r],
                position=ev["position"][r], long_click_ms=config.long_click_ms,
            )
        state[user] = recent
        j = k
    return out


def build_training_set(
    con: duckdb.DuckDBPyConnection,
    config: TrainingSetConfig | None = None,
    vectors: ItemVectorLookup | None = None,
    vectors_for: VectorsFor | None = None,
) -> pa.Table:
    """One row per impression with labels and point-in-time features, in time order.

    Columns: ids (event_id, ts, user_id, item_id, request_id, group_id), position, item
    attributes (market, category, brand, price, bid), the request query, the ``*_before`` counters,
    ``item_ctr_before`` (smoothed), ``recent_clicks`` (list, most recent last), the user's
    behaviour sequence (``hist_items`` / ``hist_kinds`` / ``hist_ages``, lists, last
    ``config.history_len`` actions across sessions, :mod:`funnel.features.history`), the
    query-item match features (``qm_*``, :mod:`funnel.features.query_match`), the
    personalization features (``FEATURE_NAMES``) when ``vectors`` is given, and labels
    ``click`` / ``booking``. ``vectors_for`` (with ``vectors``) picks each user's vectors for
    those features, e.g. vectors that never saw the user's sessions.
    Negative rows are kept with probability ``config.negative_rate`` (recorded in the schema
    metadata as ``negative_rate``).
    """
    config = config or TrainingSetConfig()
    ready = "training_rows" in pipeline_tables(con)  # a pipeline run's rows (--tables)
    table = con.sql("SELECT * FROM training_rows ORDER BY ts, event_id" if ready
                    else rows_sql(config)).to_arrow_table()
    replay = _replay(con, config, vectors, vectors_for)
    ids = table.column("event_id").to_pylist()
    empty: tuple[list[str], dict[str, float], dict[str, list[str]]] = (
        [], {}, {c: [] for c in HISTORY_COLUMNS})
    found = [replay.get(e, empty) for e in ids]
    recent = [f[0] for f in found]
    cols = {name: table.column(name) for name in table.column_names}
    imps = np.asarray(cols["item_imps_before"], dtype=np.float64)
    clicks = np.asarray(cols["item_clicks_before"], dtype=np.float64)
    prior = float(np.asarray(cols["click"]).mean()) if len(ids) else 0.0
    cols["item_ctr_before"] = pa.array((clicks + 10 * prior) / (imps + 10))
    cols["recent_clicks"] = pa.array(recent, type=pa.list_(pa.string()))
    cols["n_recent_clicks"] = pa.array([len(r) for r in recent], type=pa.int64())
    for name in HISTORY_COLUMNS:
        cols[name] = pa.array([f[2][name] for f in found], type=pa.list_(pa.string()))
    match = query_match_features(
        *(table.column(c).to_pylist() for c in ("query", "title", "category", "brand", "market"))
    )
    for name, values in match.items():
        cols[name] = pa.array(values, type=pa.float32())
    if vectors is not None:
        for name in FEATURE_NAMES:
            cols[name] = pa.array([f[1].get(name, 0.0) for f in found], type=pa.float32())
    out = pa.table(cols)
    if config.negative_rate < 1.0 and len(ids):
        rng = np.random.default_rng(config.seed)
        label = np.asarray(out.column("click"))
        keep = label | (rng.random(len(label)) < config.negative_rate)
        out = out.filter(pa.array(keep))
    meta = {b"negative_rate": str(config.negative_rate).encode()}
    return out.replace_schema_metadata(meta)
