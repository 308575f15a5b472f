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

import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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


_REPLAY_SQL = """
SELECT user_id, epoch_ms(ts) AS ts_ms, event_type, item_id, request_id, position, dwell_ms,
       event_id
FROM events
WHERE event_type IN ('impression', 'click', 'booking') AND item_id IS NOT NULL
  AND hash(user_id) % {parts} = {part}
ORDER BY user_id, ts, CASE WHEN event_type = 'impression' THEN 0 ELSE 1 END, event_id
"""


def replay_sql(part: int = 0, parts: int = 1) -> str:
    """Every event a user's state replays, in replay order, for the users of partition
    ``part`` of ``parts`` (``hash(user_id) % parts``); ``hash(NULL)`` is a constant, so the
    events without a user stay together in one partition."""
    return _REPLAY_SQL.format(part=int(part), parts=int(parts))


PARTITION_ROWS = 100_000
"""Training rows per user partition of the replay: its Python state stays near this size
(~3 KB a row) whatever the log's length."""


VectorsFor = Callable[[str | None], ItemVectorLookup]
"""``user_id -> vectors`` for that user's rows (out-of-fold vectors, ``rank.oof_vectors``)."""

_Replayed = tuple[list[str], dict[str, float], dict[str, list[str]]]


def _replay(
    con: duckdb.DuckDBPyConnection,
    config: TrainingSetConfig,
    vectors: ItemVectorLookup | None,
    vectors_for: VectorsFor | None = None,
    part: int = 0,
    parts: int = 1,
) -> dict[str, _Replayed]:
    """Per impression event id of the users in partition ``part`` of ``parts``: recent
    clicks, personalization features and the history columns
    (:func:`~funnel.features.history.history_columns`) as of its time.

    Events of one user at one timestamp are applied only after every impression at that
    timestamp has been scored, so nothing at or after an impression's time is visible to it.
    """
    ev = con.sql(replay_sql(part, parts)).to_arrow_table().to_pydict()
    out: dict[str, _Replayed] = {}
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


def negatives_kept(label: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Row mask of a negative-downsampled slice: every positive, each negative with
    probability ``rate``; one draw per row, so batches of one seeded stream sample as one."""
    return (label > 0) | (rng.random(len(label)) < rate)


def _literal(path: Path) -> str:
    """``path`` as a SQL string literal (a workspace path may hold a quote)."""
    return "'" + str(path).replace("'", "''") + "'"


def _replay_columns(with_features: bool) -> tuple[str, ...]:
    """The columns a partition's replay file holds besides ``event_id``."""
    return ("recent_clicks", *HISTORY_COLUMNS, *(FEATURE_NAMES if with_features else ()))


def _replay_table(replayed: dict[str, _Replayed], with_features: bool) -> pa.Table:
    """One user partition's replay as Arrow columns keyed by ``event_id`` (Parquet-ready)."""
    ids = list(replayed)
    found = list(replayed.values())
    cols: dict[str, pa.Array] = {"event_id": pa.array(ids, type=pa.string())}
    for name in _replay_columns(with_features):
        if name == "recent_clicks":
            cols[name] = pa.array([f[0] for f in found], type=pa.list_(pa.string()))
        elif name in HISTORY_COLUMNS:
            cols[name] = pa.array([f[2][name] for f in found], type=pa.list_(pa.string()))
        else:
            cols[name] = pa.array([f[1].get(name, 0.0) for f in found], type=pa.float32())
    return pa.table(cols)


@dataclass
class TrainingRows:
    """The point-in-time rows of a store, streamed in time order (see the module docstring).

    Why: a long log's rows do not fit one process. The rows' SQL is written to Parquet by
    DuckDB, the Python replay runs one user partition at a time (``PARTITION_ROWS``) into
    Parquet, and DuckDB joins the two and sorts by time, spilling past the connection's
    ``memory_limit``; :meth:`batches` hands out the result a batch at a time. ``rows`` and
    ``click_rate`` are known before the first batch (a time split or a label prior needs them).
    Use as a context manager: the intermediate files live in a temporary directory under
    ``workdir`` until it closes.
    """

    rows: int
    """Rows before negative sampling."""
    click_rate: float
    """Share of rows clicked (the item-CTR prior)."""
    _con: duckdb.DuckDBPyConnection
    _config: TrainingSetConfig
    _with_features: bool
    _tmp: tempfile.TemporaryDirectory[str]

    @classmethod
    def open(
        cls,
        con: duckdb.DuckDBPyConnection,
        config: TrainingSetConfig | None = None,
        vectors: ItemVectorLookup | None = None,
        vectors_for: VectorsFor | None = None,
        *,
        workdir: Path | None = None,
        partition_rows: int = PARTITION_ROWS,
    ) -> TrainingRows:
        config = config or TrainingSetConfig()
        if not isinstance(partition_rows, int) or partition_rows < 1:
            raise ValueError(f"partition_rows must be a positive int; got {partition_rows!r}")
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.TemporaryDirectory(dir=workdir, prefix="training-rows-")
        root = Path(tmp.name)
        try:
            ready = "training_rows" in pipeline_tables(con)  # a pipeline run's rows (--tables)
            source = ("SELECT * FROM training_rows ORDER BY ts, event_id" if ready
                      else rows_sql(config))
            rows = _literal(root / "rows.parquet")
            con.execute(f"COPY ({source}) TO {rows} (FORMAT parquet)")
            n, rate = con.sql(f"SELECT count(*), coalesce(avg(CAST(click AS DOUBLE)), 0.0) "
                              f"FROM read_parquet({rows})").fetchall()[0]
            parts = max(1, -(-int(n) // partition_rows))
            (root / "replay").mkdir()
            for part in range(parts):
                replayed = _replay(con, config, vectors, vectors_for, part, parts)
                pq.write_table(_replay_table(replayed, vectors is not None),
                               root / "replay" / f"part-{part:05d}.parquet")
                del replayed
        except BaseException:
            tmp.cleanup()
            raise
        return cls(int(n), float(rate), con, config, vectors is not None, tmp)

    def __enter__(self) -> TrainingRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def batches(self, batch_rows: int = 65_536) -> Iterator[pa.Table]:
        """The rows in time order (``build_training_set``'s columns), at most ``batch_rows``
        at a time; at least one table, empty when the store has no impressions."""
        if not isinstance(batch_rows, int) or batch_rows < 1:
            raise ValueError(f"batch_rows must be a positive int; got {batch_rows!r}")
        root = Path(self._tmp.name)
        replay = _replay_columns(self._with_features)
        defaults = dict.fromkeys(("recent_clicks", *HISTORY_COLUMNS), "CAST([] AS VARCHAR[])")
        picked = ", ".join(f'coalesce(r."{c}", {defaults.get(c, "CAST(0.0 AS FLOAT)")}) '
                           f'AS "__replay_{c}"' for c in replay)
        reader = self._con.sql(f"""
            SELECT t.*, {picked}
            FROM read_parquet({_literal(root / 'rows.parquet')}) t
            LEFT JOIN read_parquet({_literal(root / 'replay' / '*.parquet')}) r USING (event_id)
            ORDER BY t.ts, t.event_id
        """).to_arrow_reader(batch_rows)
        rng = np.random.default_rng(self._config.seed)
        yielded = False
        for batch in reader:
            yield self._finish(pa.Table.from_batches([batch]), rng)
            yielded = True
        if not yielded:
            yield self._finish(reader.schema.empty_table(), rng)

    def _finish(self, raw: pa.Table, rng: np.random.Generator) -> pa.Table:
        """Raw joined rows -> the training-set columns, in the order and types of one table
        built whole; negatives sampled with one seeded stream across batches."""
        replayed = {n.removeprefix("__replay_"): raw.column(n) for n in raw.column_names
                    if n.startswith("__replay_")}
        cols = {n: raw.column(n) for n in raw.column_names if not n.startswith("__replay_")}
        imps = np.asarray(cols["item_imps_before"], dtype=np.float64)
        clicks = np.asarray(cols["item_clicks_before"], dtype=np.float64)
        prior = self.click_rate
        cols["item_ctr_before"] = pa.array((clicks + 10 * prior) / (imps + 10))
        strings = pa.list_(pa.string())
        recent = replayed["recent_clicks"].cast(strings)
        cols["recent_clicks"] = recent
        cols["n_recent_clicks"] = pc.list_value_length(recent).cast(pa.int64())
        for name in HISTORY_COLUMNS:
            cols[name] = replayed[name].cast(strings)
        match = query_match_features(
            *(raw.column(c).to_pylist() for c in ("query", "title", "category", "brand", "market"))
        )
        for name, values in match.items():
            cols[name] = pa.array(values, type=pa.float32())
        if self._with_features:
            for name in FEATURE_NAMES:
                cols[name] = replayed[name].cast(pa.float32())
        out = pa.table(cols)
        if self._config.negative_rate < 1.0 and out.num_rows:
            label = np.asarray(out.column("click"))
            out = out.filter(pa.array(negatives_kept(label, self._config.negative_rate, rng)))
        return out.replace_schema_metadata(
            {b"negative_rate": str(self._config.negative_rate).encode()})


def build_training_set(
    con: duckdb.DuckDBPyConnection,
    config: TrainingSetConfig | None = None,
    vectors: ItemVectorLookup | None = None,
    vectors_for: VectorsFor | None = None,
    *,
    workdir: Path | None = None,
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
    metadata as ``negative_rate``). The whole set in memory: :class:`TrainingRows` streams it.
    """
    with TrainingRows.open(con, config, vectors, vectors_for, workdir=workdir) as rows:
        return pa.concat_tables(rows.batches())
