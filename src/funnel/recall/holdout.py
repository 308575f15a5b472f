"""Time-split evaluation: fit the behaviour sources on the past, score them on later sessions.

Sessions ending in the last ``test_fraction`` of the time span are held out; popularity,
co-visitation and query -> items are fitted only on events and sessions before the cutoff, so
the figures are not inflated by seeing the answer. Lexical search uses only the catalog. The
vector source, when given, uses whatever embeddings it is handed (trained on all data by the
embeddings stage, so its figure is optimistic).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.recall._sql import require_columns
from funnel.recall.base import CandidateSource
from funnel.recall.covisit import CoVisitation
from funnel.recall.evaluate import cases_from_sessions, recall_table
from funnel.recall.lexical import LexicalIndex
from funnel.recall.merger import Merger
from funnel.recall.popularity import Popularity
from funnel.recall.query_items import QueryItems


def time_cutoff(sessions: pa.Table, test_fraction: float) -> Any:
    """The end_ts quantile that leaves ``test_fraction`` of the sessions after it."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    ends = sessions.column("end_ts")
    order = pc.sort_indices(ends)
    return ends.take(order)[int(len(ends) * (1.0 - test_fraction))]


def holdout_recall(
    sessions: pa.Table,
    events: pa.Table | None = None,
    items: pa.Table | None = None,
    *,
    extra_sources: Sequence[CandidateSource] = (),
    test_fraction: float = 0.1,
    max_cases: int = 2000,
    ks: Sequence[int] = (20, 100, 500),
    seed: int = 0,
) -> list[dict[str, float | str]]:
    """Recall@K per source and merged on the held-out tail of ``sessions``."""
    require_columns(sessions, "sessions", ("session_id", "end_ts", "items"))
    cutoff = time_cutoff(sessions, test_fraction)
    end_ts = sessions.column("end_ts")
    train = sessions.filter(pc.less(end_ts, cutoff))
    test = sessions.filter(pc.greater_equal(end_ts, cutoff))
    sources: list[CandidateSource] = [CoVisitation().fit(train)]
    if events is not None:
        ts = events.column("ts")
        past = events.filter(pc.less(ts, pc.cast(cutoff, ts.type)))
        sources.append(Popularity().fit(past))
        if pc.sum(pc.equal(past.column("event_type"), "search")).as_py():
            sources.append(QueryItems().fit(past))
    if items is not None and "title" in items.column_names:
        sources.append(LexicalIndex().fit(items))
    sources.extend(extra_sources)
    cases = cases_from_sessions(test)
    if len(cases) > max_cases:
        pick = np.random.default_rng(seed).choice(len(cases), size=max_cases, replace=False)
        cases = [cases[i] for i in sorted(pick)]
    merger = Merger(sources, default_quota=max(ks), timeout_s=5.0)
    try:
        return recall_table(sources, cases, ks=ks, merger=merger)
    finally:
        merger.close()


def diginetica_tables(path: Path) -> tuple[pa.Table, pa.Table]:
    """Sessions and view events from the DIGINETICA item-views CSV (session_id;user_id;...)."""
    import pyarrow.csv as pacsv

    csv = path / "sample_train-item-views.csv" if path.is_dir() else path
    raw = pacsv.read_csv(
        csv, parse_options=pacsv.ParseOptions(delimiter=";"),
        convert_options=pacsv.ConvertOptions(column_types={
            "sessionId": pa.string(), "session_id": pa.string(), "itemId": pa.string(),
            "item_id": pa.string(), "timeframe": pa.int64(), "eventdate": pa.string(),
        }),
    )
    names = {n.lower().replace("_", ""): n for n in raw.column_names}
    sid = raw.column(names["sessionid"]).to_pylist()
    item = raw.column(names["itemid"]).to_pylist()
    frame = raw.column(names["timeframe"]).to_pylist()
    date = raw.column(names["eventdate"]).to_pylist()
    order = sorted(range(len(sid)), key=lambda i: (sid[i], frame[i]))
    grouped: dict[str, list[int]] = {}
    for i in order:
        grouped.setdefault(sid[i], []).append(i)
    utc = dt.UTC
    s_ids, s_end, s_items, e_ts, e_item, e_user = [], [], [], [], [], []
    for s, rows in grouped.items():
        day = dt.datetime.fromisoformat(date[rows[0]]).replace(tzinfo=utc)
        s_ids.append(s)
        s_end.append(day + dt.timedelta(milliseconds=frame[rows[-1]]))
        s_items.append([item[i] for i in rows])
        for i in rows:
            e_ts.append(day + dt.timedelta(milliseconds=frame[i]))
            e_item.append(item[i])
            e_user.append(s)
    ts_type = pa.timestamp("ms", tz="UTC")
    sessions = pa.table({
        "session_id": s_ids, "end_ts": pa.array(s_end, ts_type),
        "items": pa.array(s_items, pa.list_(pa.string())),
    })
    events = pa.table({
        "ts": pa.array(e_ts, ts_type), "user_id": e_user, "event_type": ["click"] * len(e_ts),
        "item_id": e_item, "query": pa.nulls(len(e_ts), pa.string()),
        "market": pa.nulls(len(e_ts), pa.string()),
    })
    return sessions, events
