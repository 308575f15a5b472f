"""The session recall sources as they would answer for a session they never saw (cross-fitting).

A ranker that reads recall's ranks (:mod:`funnel.rank.recall_features`) must train on ranks
that did not count the click they label: sources fit on the whole log have counted every
training transition (the co-occurrence of a rare pair is then the label itself). So sessions
are split into ``folds`` by a hash of their id, and a click of fold ``f`` is asked of sources fit
on every other fold (out-of-fold, as stacking does), with the quotas and settings the served
sources have. A time cut instead (fit on the past, label the future) loses most rows on a
small log: on the DIGINETICA sample only 6% of the second half's clicks were recallable from
the first half (its items churn over five months), against every click here.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.store import EventStore
from funnel.recall.build import RecallConfig
from funnel.recall.merger import Merger
from funnel.recall.session_rules import ITEM_SESSIONS_SQL


def session_fold(session_id: str, folds: int) -> int:
    """A session's fold: a stable hash of its id (the same in every run and process)."""
    return zlib.crc32(str(session_id).encode()) % folds


@dataclass
class OutOfFoldRecall:
    """One merger per fold, each fit without that fold's sessions; ``fold_of_event`` says
    which merger may answer for a click (events outside any session: none)."""

    mergers: list[Merger]
    fold_of_event: dict[str, int]
    session_of_event: dict[str, str] = field(default_factory=dict)

    def merger_for(self, event_id: str) -> Merger | None:
        fold = self.fold_of_event.get(event_id)
        return None if fold is None else self.mergers[fold]


def out_of_fold_recall(
    con: duckdb.DuckDBPyConnection, folds: int = 5, config: RecallConfig | None = None,
) -> OutOfFoldRecall:
    """Popularity, co-visitation, cooc, SR and session kNN, fit ``folds`` times on the store of
    ``con`` without one fold of sessions each, configured as ``config`` (the served
    ``[recall]``). Sources with nothing to learn from are left out."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2; got {folds}")
    config = config or RecallConfig()
    store = EventStore(con)
    if not store.has_table("session_events"):
        return OutOfFoldRecall([], {})
    membership = con.sql("SELECT session_id, event_id FROM session_events").fetchall()
    fold_of_session: dict[str, int] = {}
    fold_of_event: dict[str, int] = {}
    session_of_event: dict[str, str] = {}
    for sid, eid in membership:
        f = fold_of_session.setdefault(sid, session_fold(sid, folds))
        fold_of_event[eid] = f
        session_of_event[eid] = sid
    events = con.sql(
        "SELECT event_id, ts, user_id, event_type, item_id, query, market FROM events"
    ).to_arrow_table()
    event_fold = pa.array([fold_of_event.get(e, -1) for e in events.column("event_id")
                           .to_pylist()], pa.int64())
    sessions = (con.sql("SELECT session_id, end_ts, items, booked_item FROM sessions")
                .to_arrow_table() if store.has_table("sessions") else None)
    session_fold_col = (pa.array([fold_of_session.get(s, -1) for s in sessions.column(
        "session_id").to_pylist()], pa.int64()) if sessions is not None else None)
    item_sessions = con.sql(ITEM_SESSIONS_SQL).fetchall()
    mergers = []
    for f in range(folds):
        sources: list[object] = []
        ev = events.filter(pc.not_equal(event_fold, f))
        if ev.num_rows:
            sources.append(config.popularity().fit(ev))
        if sessions is not None and session_fold_col is not None:
            past = sessions.filter(pc.not_equal(session_fold_col, f))
            if past.num_rows:
                sources.append(config.covisitation().fit(past))
        kept = [r for r in item_sessions if fold_of_session.get(r[0], -1) != f]
        if kept:
            seqs, ends = [list(r[1]) for r in kept], [float(r[2]) for r in kept]
            sources += [m.fit(seqs, times=ends) for m in config.session_models().values()]
        # a replay has no deadline to meet: the sources answer every request in full
        mergers.append(config.merger(sources, timeout_s=60.0))
    return OutOfFoldRecall(mergers, fold_of_event, session_of_event)


__all__ = ["OutOfFoldRecall", "out_of_fold_recall", "session_fold"]
