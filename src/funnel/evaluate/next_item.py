"""Next-item evaluation of session recommenders (the session-rec protocol).

Ludewig & Jannach, "Evaluation of session-based recommendation algorithms" (UMUAI 2018): for
every held-out session ``s = (i_1, ..., i_n)`` and every position ``t = 1 .. n-1`` the prefix
``(i_1, ..., i_t)`` (the clicks so far) is given and a method is asked for a top-20 list; the
case is scored against the next item ``i_{t+1}``:

- ``HR@20`` = share of cases whose next item is in the list;
- ``MRR@20`` = mean of ``1 / rank`` of the next item (0 when it is not in the top 20).

Both come with a 95% interval clustered by session (:func:`clustered_mean_ci`): the cases of one
session share its prefix and intent, so they are not independent draws.

**All cases and new-to-session cases.** Sessions revisit items (DIGINETICA: about a quarter of
next clicks are an item already in the prefix). A list that never re-shows the session's own
items cannot hit those cases, so it is judged on the cases whose next item is *not* in the
prefix (``*_new``). On those cases every method is scored on its list with the session's own
items removed; methods are asked for ``k + |set(prefix)|`` items so that what is left still
fills ``k`` (the order of the rest is unchanged, so this is the method's list "with seen items
excluded"). The served funnel is the exception: it is asked exactly as ``GET /recommend`` asks
it (``k = 20``), so an item it re-shows costs it a slot there too.

**Which the funnel is judged on.** By default every recall source of the served engine drops
the request's ``recent_items`` (the last 5 clicks of the online state, ``Engine.run``) from its
candidates (popularity and vector recall always; co-visitation and the session sources unless
built with ``exclude_recent`` off, ``[recall] session_exclude_recent``), and candidates only
come from recall, so the funnel does not re-show what the session clicked last (it may re-show
an item clicked more than 5 clicks ago: 3-4% of lists on the DIGINETICA sample). It is then
judged on **new-to-session cases**, and on all cases when a source of the artifact keeps recent
items (:attr:`EngineRecommender.judged_on`). ``judged_on`` records which, and ``reshow`` per
method the measured share of lists that contain a session item.

**The split** (:func:`split_by_start`): sessions in time order of their start; the last 20% of
start times are the test sessions, and the training data is every event before the first test
session started (a session running across that moment is cut there, so nothing after it is
learned from). Items never clicked in training are dropped from the test sessions, and test
sessions left with fewer than 2 clicks are dropped: the session-rec convention, since no method
can recommend an item it has never seen.

Example::

    from funnel.evaluate.next_item import PopularityRecommender, Session, evaluate_next_item

    train = [Session("s1", None, 0, ("a", "b", "c")), Session("s2", None, 1, ("a", "b"))]
    test = [Session("s3", None, 2, ("a", "b", "c"))]
    result = evaluate_next_item([PopularityRecommender().fit(train)], test)
    result.figures()["hr20_pop"]
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from funnel.evaluate.metrics import clustered_mean_ci
from funnel.exceptions import ConfigError
from funnel.features.personalization import STATE_WINDOW
from funnel.recall.history import UserHistory

if TYPE_CHECKING:
    import duckdb

    from funnel.engine.core import Engine
    from funnel.features.personalization import RecentActions
    from funnel.recall.base import RecallRequest
    from funnel.workspace import Workspace

K = 20
"""The list length of the protocol (HR@20, MRR@20)."""
TEST_FRACTION = 0.2
"""Share of sessions (by start time, the latest) held out for testing."""
RECENT_ITEMS = 5
"""How many of the latest clicks ``Engine.run`` passes to recall as ``recent_items``."""
QUERY_SOURCES = ("lexical", "query_items")
"""Recall sources that answer only a query: asked for a browse feed they return nothing."""
RETURNING_USER_SOURCES = (UserHistory.name,)
"""Recall sources that answer only a returning user (their earlier sessions): alone on a
session's prefix they return nothing; :class:`ReturningUserFunnel` measures what they add."""


# -- data -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    """One session: its clicked items in time order."""

    session_id: str
    user_id: str | None
    start_ms: int
    items: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    """Train and test sessions of a time split, and the moment between them."""

    train: list[Session]
    test: list[Session]
    cut_ms: int


def split_by_start(sessions: Sequence[Session], test_fraction: float = TEST_FRACTION) -> Split:
    """Sessions starting at or after the start of the latest ``test_fraction`` are the test.

    ``cut_ms`` is the start of the first test session: sessions sorted by (start, id), the one
    at position ``floor((1 - test_fraction) * n)`` opens the test part, and every session
    starting at that same moment goes with it (a tie cannot be on both sides of a time cut).
    Train sessions here are the whole sessions starting before the cut; a workspace split
    (:func:`training_events_before`) also cuts a session running past it.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a float in (0, 1), got {test_fraction!r}")
    if len(sessions) < 2:
        raise ConfigError(
            f"the log has {len(sessions)} session(s); a train/test split needs at least 2 "
            "(run 'funnel sessions' after ingesting the events)"
        )
    ordered = sorted(sessions, key=lambda s: (s.start_ms, s.session_id))
    at = min(max(int(math.floor((1.0 - test_fraction) * len(ordered))), 1), len(ordered) - 1)
    cut = ordered[at].start_ms
    train = [s for s in ordered if s.start_ms < cut]
    test = [s for s in ordered if s.start_ms >= cut]
    if not train:
        raise ConfigError(
            f"every session starts at the same moment ({cut} ms): no time split is possible"
        )
    return Split(train, test, cut)


def filter_test(test: Iterable[Session], known: Iterable[str], *, min_len: int = 2
                ) -> list[Session]:
    """Drop items never seen in training from each test session, then sessions shorter than
    ``min_len`` (the session-rec convention)."""
    seen = known if isinstance(known, set | frozenset) else set(known)
    out = []
    for s in test:
        items = tuple(i for i in s.items if i in seen)
        if len(items) >= min_len:
            out.append(dataclasses.replace(s, items=items))
    return out


def read_sessions(con: duckdb.DuckDBPyConnection, *, since_ms: int | None = None
                  ) -> list[Session]:
    """Sessions with at least one click from a workspace's ``sessions`` table, clicked items
    in time order (``since_ms``: only sessions starting at or after it)."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'sessions'").fetchall()[0][0]
    if not exists:
        raise ConfigError("the workspace has no sessions table; run 'funnel sessions' first")
    where = "n_clicks > 0" + ("" if since_ms is None else
                              " AND start_ts >= make_timestamptz(CAST(? AS BIGINT) * 1000)")
    rows = con.execute(
        f"SELECT session_id, user_id, epoch_ms(start_ts), items FROM sessions WHERE {where} "
        "ORDER BY start_ts, session_id", [] if since_ms is None else [since_ms]).fetchall()
    return [Session(str(sid), None if uid is None else str(uid), int(ms),
                    tuple(str(i) for i in items if i is not None))
            for sid, uid, ms, items in rows]


def workspace_sessions(ws: Workspace, *, since_ms: int | None = None) -> list[Session]:
    """:func:`read_sessions` of ``ws``'s store."""
    con = ws.connect(read_only=True)
    try:
        return read_sessions(con, since_ms=since_ms)
    finally:
        con.close()


# -- recommenders ---------------------------------------------------------------------------
class NextItemRecommender(Protocol):
    """Anything that answers "what next, given these clicks?" with a list of item ids.

    ``recommend(prefix, k)`` returns up to ``k`` item ids, best first, for a session whose
    clicks so far are ``prefix`` (oldest first). Methods that use who the user is also
    implement :class:`UserAwareRecommender`; the evaluator then calls ``recommend_for``.
    """

    name: str

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]: ...


@runtime_checkable
class UserAwareRecommender(Protocol):
    """A recommender that also takes the session's user (None when anonymous)."""

    name: str

    def recommend_for(self, user_id: str | None, prefix: Sequence[str], k: int) -> list[str]: ...


@runtime_checkable
class SessionAwareRecommender(Protocol):
    """A recommender that reads the whole test session (its user and start time), e.g. to
    replay the user's earlier sessions; the evaluator then calls ``recommend_in``."""

    name: str

    def recommend_in(self, session: Session, prefix: Sequence[str], k: int) -> list[str]: ...


class PopularityRecommender:
    """The ``k`` most clicked items in training, whatever the session did."""

    name = "pop"

    def fit(self, sessions: Iterable[Session]) -> PopularityRecommender:
        counts = Counter(i for s in sessions for i in s.items)
        # ties by id, so the list does not depend on the order sessions were read in
        self.ranked_ = [i for i, _ in sorted(counts.items(), key=lambda p: (-p[1], p[0]))]
        return self

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]:
        return self.ranked_[:k]


class SessionEstimator(Protocol):
    """The estimator API of :mod:`funnel.recall.session_rules`."""

    def fit(self, sessions: Sequence[Sequence[str]], *, times: Sequence[float] | None = None
            ) -> SessionEstimator: ...

    def recommend(self, prefix: Sequence[str], k: int, *, exclude: Collection[str] = ()
                  ) -> tuple[Sequence[str], Sequence[float]]: ...


@dataclass
class EstimatorRecommender:
    """A :class:`SessionEstimator` (co-occurrence, SR, V-SKNN) as a next-item recommender."""

    name: str
    estimator: SessionEstimator

    def fit(self, sessions: Sequence[Session]) -> EstimatorRecommender:
        # times in seconds, one per session (recency weights of V-SKNN)
        self.estimator.fit([list(s.items) for s in sessions],
                           times=[s.start_ms / 1000.0 for s in sessions])
        return self

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]:
        ids, _ = self.estimator.recommend(list(prefix), k)
        return [str(i) for i in ids][:k]


def session_baselines(train: Sequence[Session]) -> list[NextItemRecommender]:
    """Popularity, last-item co-occurrence, sequential rules and V-SKNN fitted on ``train``.

    The three session estimators come from :mod:`funnel.recall.session_rules` with their own
    defaults (the textbook settings of session-rec).
    """
    from funnel.recall import session_rules

    out: list[NextItemRecommender] = [PopularityRecommender().fit(train)]
    for name, cls in (("cooc", session_rules.LastItemCooccurrence),
                      ("sr", session_rules.SequentialRules), ("vsknn", session_rules.SessionKNN)):
        out.append(EstimatorRecommender(name, cls()).fit(train))
    return out


def _click_events(items: Sequence[str], start_ms: int) -> list[dict[str, object]]:
    """``POST /events`` click events for ``items``, one second apart from ``start_ms``."""
    return [{"event_type": "click", "item_id": item, "ts_ms": start_ms + 1000 * j,
             "dwell_ms": None, "request_id": None, "position": None}
            for j, item in enumerate(items)]


def click_state(prefix: Sequence[str], *, max_actions: int = STATE_WINDOW,
                start_ms: int = 0) -> RecentActions:
    """The online state after the session's clicks went through ``POST /events``.

    Built by the route's own function (:func:`funnel.serve.state.apply_events`), one click
    event per prefix item, one second apart. Only the last ``max_actions`` clicks are folded in:
    the state keeps no more, and clicks without impressions or dwell leave nothing else, so the
    result equals folding the whole prefix.
    """
    from funnel.features.personalization import RecentActions
    from funnel.serve.state import apply_events

    tail = list(prefix)[-max_actions:]
    return apply_events(RecentActions(max_len=max_actions), _click_events(tail, start_ms))


@dataclass
class EngineRecommender:
    """The served funnel: ``Engine.run`` exactly as ``GET /recommend/{user_id}`` calls it.

    The online state is what ``POST /events`` would have built from the session's clicks
    (:func:`click_state`); ``query=""``, ``market=None``, ``filters={}``, ``k=served_k``. Asked
    for more than ``served_k`` items it still returns the served list (what a user sees).
    Load it with :meth:`load`, which sets a recall deadline no replay can hit
    (:func:`funnel.evaluate.replay.offline_engine`).
    """

    engine: Engine
    served_k: int = K
    max_actions: int = STATE_WINDOW
    name: str = "funnel"
    timings_ms: list[float] = field(default_factory=list)
    """Wall time of every ``Engine.run`` call, in ms."""

    @classmethod
    def load(cls, artifact_dir: Path, *, served_k: int = K) -> EngineRecommender:
        from funnel.engine.core import Engine
        from funnel.evaluate.replay import offline_engine

        return cls(offline_engine(Engine.load(Path(artifact_dir))), served_k=served_k)

    @property
    def judged_on(self) -> str:
        """"new" when every recall source leaves the request's recent clicks out (a source
        without an ``exclude_recent`` switch always does), so the served list does not
        re-show them; "all" when one may re-show them (e.g. ``[recall]
        session_exclude_recent = false``)."""
        sources = self.engine.recall.sources.values()
        return "new" if all(getattr(s, "exclude_recent", True) for s in sources) else "all"

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]:
        return self.recommend_for(None, prefix, k)

    def recommend_for(self, user_id: str | None, prefix: Sequence[str], k: int) -> list[str]:
        return self.recommend_state(user_id, click_state(prefix, max_actions=self.max_actions),
                                    k)

    def recommend_state(self, user_id: str | None, state: RecentActions, k: int, *,
                        now_ms: int | None = None) -> list[str]:
        """The served list for this online state, asked at ``now_ms``."""
        t0 = time.perf_counter()
        res = self.engine.run(query="", user_id=user_id, market=None, filters={},
                              k=self.served_k, state=state, now_ms=now_ms)
        self.timings_ms.append((time.perf_counter() - t0) * 1000.0)
        return list(res.item_ids)

    def recall_request(self, user_id: str | None, prefix: Sequence[str]) -> RecallRequest:
        """The :class:`RecallRequest` ``Engine.run`` builds for this browse request."""
        from funnel.recall.base import RecallRequest

        state = click_state(prefix, max_actions=self.max_actions)
        return RecallRequest(user_id=user_id, query=None, market=self.engine.session_market(state),
                             recent_items=tuple(state.clicks[-RECENT_ITEMS:]), filters={},
                             k=self.engine.recall_k)

    def sources(self) -> list[NextItemRecommender]:
        """One recommender per browse recall source of the engine (not the query-only ones,
        :data:`QUERY_SOURCES`, nor :data:`RETURNING_USER_SOURCES`), and the merger's fused
        list."""
        out: list[NextItemRecommender] = [
            RecallRecommender(self, name) for name in sorted(self.engine.recall.sources)
            if name not in (*QUERY_SOURCES, *RETURNING_USER_SOURCES)]
        out.append(RecallRecommender(self, None))
        return out


@dataclass
class AnonymousFunnel:
    """The served funnel for a visitor it does not know: no user id, and an online state
    holding only this session's clicks (the baseline of :class:`ReturningUserFunnel`)."""

    funnel: EngineRecommender
    name: str = "funnel_anonymous"

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]:
        return self.funnel.recommend_for(None, prefix, k)


@dataclass
class ReturningUserFunnel:
    """The served funnel for a returning user: ``GET /recommend/{user_id}`` after the clicks
    of the user's earlier sessions (training and earlier test sessions alike: the server saw
    them through ``POST /events``) and then this session's went into the online state, which
    keeps the last ``STATE_WINDOW`` clicks across sessions. Against :class:`AnonymousFunnel`
    it measures what knowing the user is worth on a real log."""

    funnel: EngineRecommender
    history: Mapping[str, Sequence[Session]]
    """User id -> that user's sessions (any order)."""
    name: str = "funnel_personal"

    @classmethod
    def of(cls, funnel: EngineRecommender, sessions: Iterable[Session]) -> ReturningUserFunnel:
        by_user: dict[str, list[Session]] = {}
        for s in sessions:
            if s.user_id is not None:
                by_user.setdefault(s.user_id, []).append(s)
        for past in by_user.values():
            past.sort(key=lambda s: (s.start_ms, s.session_id))
        return cls(funnel, by_user)

    def earlier_sessions(self, session: Session) -> list[Session]:
        """The user's sessions that started before ``session``, oldest first."""
        past = self.history.get(session.user_id or "", ())
        return [s for s in past if s.start_ms < session.start_ms]

    def earlier_clicks(self, session: Session) -> list[str]:
        """The user's clicks in sessions that started before ``session``, oldest first."""
        return [i for s in self.earlier_sessions(session) for i in s.items]

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]:
        return self.funnel.recommend_for(None, prefix, k)

    def state_at(self, session: Session, prefix: Sequence[str]) -> tuple[RecentActions, int]:
        """(the online state, the request time) after the user's earlier sessions and this
        session's ``prefix`` went through ``POST /events``: each session's clicks one second
        apart from its own start, so the engine can tell the session in progress apart."""
        from funnel.features.personalization import RecentActions
        from funnel.serve.state import apply_events

        events = [e for past in self.earlier_sessions(session)
                  for e in _click_events(past.items, past.start_ms)]
        events += _click_events(prefix, session.start_ms)
        empty = RecentActions(max_len=self.funnel.max_actions)
        return apply_events(empty, events), session.start_ms + 1000 * len(prefix)

    def recommend_in(self, session: Session, prefix: Sequence[str], k: int) -> list[str]:
        state, now_ms = self.state_at(session, prefix)
        return self.funnel.recommend_state(session.user_id, state, k, now_ms=now_ms)


@dataclass
class RecallRecommender:
    """One recall source of the served engine alone (``source=None``: the merger's fused
    list, i.e. the funnel before the ranker and re-rank), asked with the request the engine
    builds. A source is asked for the ``k`` it is evaluated at (its list is ranked by score,
    so its top ``k`` does not depend on it); the merger with the engine's ``recall_k``, since
    its quotas are shares of that."""

    funnel: EngineRecommender
    source: str | None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"recall:{self.source or 'merged'}"

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]:
        return self.recommend_for(None, prefix, k)

    def recommend_for(self, user_id: str | None, prefix: Sequence[str], k: int) -> list[str]:
        request = self.funnel.recall_request(user_id, prefix)
        recall = self.funnel.engine.recall
        if self.source is None:
            merged = recall.merger.recall(request)
            order = np.argsort(-np.asarray(merged.scores, dtype=np.float64), kind="stable")
            return [str(merged.item_ids[j]) for j in order[:k]]
        found = recall.sources[self.source].candidates(dataclasses.replace(request, k=k))
        return [str(i) for i in found.item_ids.tolist()[:k]]


@dataclass
class ListRecommender:
    """Lists computed elsewhere (e.g. a peer model run out of process), by prefix."""

    name: str
    lists: dict[tuple[str, ...], list[str]]

    @classmethod
    def from_lists(cls, name: str, prefixes: Sequence[Sequence[str]],
                   lists: Sequence[Sequence[str]]) -> ListRecommender:
        if len(prefixes) != len(lists):
            raise ValueError(f"lists: expected {len(prefixes)} lists (one per prefix), "
                             f"got {len(lists)}")
        return cls(name, {tuple(p): [str(i) for i in lst]
                          for p, lst in zip(prefixes, lists, strict=True)})

    def recommend(self, prefix: Sequence[str], k: int) -> list[str]:
        return self.lists.get(tuple(prefix), [])[:k]


# -- the protocol ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """Predict ``session.items[t]`` from ``session.items[:t]`` (``t >= 1``)."""

    session: int  # index into the test sessions
    t: int


def next_item_cases(sessions: Sequence[Session], *, max_cases: int | None = None, seed: int = 0
                    ) -> list[Case]:
    """Every (session, position >= 1) case in order; a seeded uniform sample of ``max_cases``
    of them (kept in order) when there are more."""
    cases = [Case(j, t) for j, s in enumerate(sessions) for t in range(1, len(s.items))]
    if max_cases is not None and len(cases) > max_cases:
        keep = np.sort(np.random.default_rng(seed).choice(len(cases), max_cases, replace=False))
        cases = [cases[j] for j in keep.tolist()]
    return cases


def case_prefixes(sessions: Sequence[Session], cases: Sequence[Case]) -> list[list[str]]:
    return [list(sessions[c.session].items[: c.t]) for c in cases]


@dataclass(frozen=True)
class Figure:
    mean: float
    ci95: float


@dataclass
class MethodResult:
    """One method's per-case scores on all cases and on the new-to-session ones."""

    name: str
    hit: np.ndarray  # (cases,) 0/1
    rr: np.ndarray  # (cases,)
    hit_new: np.ndarray  # (cases_new,) on the list without session items
    rr_new: np.ndarray
    reshow: float
    """Share of cases whose top-k list holds an item of the session's prefix."""
    seconds: float
    summary: dict[str, Figure] = field(default_factory=dict)


@dataclass
class NextItemResult:
    """Every method's scores on the same cases."""

    methods: dict[str, MethodResult]
    cases: int
    cases_new: int
    sessions: int
    k: int = K
    judged_on: str = "new"
    """Which cases the served funnel is judged on: "new" (it does not re-show recent session
    items, see the module docstring) or "all"."""
    extra: dict[str, float] = field(default_factory=dict)
    users_new: list[str] = field(default_factory=list)
    """The user (or, for anonymous sessions, the session) of every new-to-session case."""

    def paired_gain(self, a: str, b: str, metric: str = "hit_new") -> Figure:
        """Mean per-case difference of ``metric`` (``hit_new`` / ``rr_new``), method ``a``
        minus ``b`` on the same cases, with a 95% interval clustered by user (one user's
        sessions share taste and history)."""
        diff = getattr(self.methods[a], metric) - getattr(self.methods[b], metric)
        mean, half = clustered_mean_ci(diff, self.users_new)
        return Figure(mean, half)

    def figures(self) -> dict[str, float]:
        """Flat figures: ``hr20_<m>``, ``mrr20_<m>``, ``hr20_new_<m>``, ``mrr20_new_<m>`` (+
        ``_ci95`` after each), ``reshow_<m>``, and ``cases``, ``cases_new``, ``sessions``."""
        k = self.k
        out: dict[str, float] = {"cases": float(self.cases), "cases_new": float(self.cases_new),
                                 "sessions": float(self.sessions)}
        for name, m in self.methods.items():
            key = metric_key(name)
            for metric, fig in m.summary.items():
                base = metric.replace("@", str(k))
                out[f"{base}_{key}"] = fig.mean
                out[f"{base}_{key}_ci95"] = fig.ci95
            out[f"reshow_{key}"] = m.reshow
        if {"funnel_personal", "funnel_anonymous"} <= set(self.methods) and self.users_new:
            for metric, name in (("hit_new", "hr"), ("rr_new", "mrr")):
                gain = self.paired_gain("funnel_personal", "funnel_anonymous", metric)
                out[f"gain_personal_{name}{k}_new"] = gain.mean
                out[f"gain_personal_{name}{k}_new_ci95"] = gain.ci95
        out.update(self.extra)
        return out


def metric_key(name: str) -> str:
    """``recall:covisit`` -> ``recall_covisit`` (flat JSON key part)."""
    return name.replace(":", "_").replace("-", "_")


def _rank(shown: Sequence[str], target: str, k: int) -> int:
    """0-based rank of ``target`` in ``shown[:k]``, -1 if absent."""
    for r, item in enumerate(shown[:k]):
        if item == target:
            return r
    return -1


def _summary(m: MethodResult, sessions: Sequence[str], sessions_new: Sequence[str]
             ) -> dict[str, Figure]:
    out = {}
    for metric, values, clusters in (("hr@", m.hit, sessions), ("mrr@", m.rr, sessions),
                                     ("hr@_new", m.hit_new, sessions_new),
                                     ("mrr@_new", m.rr_new, sessions_new)):
        mean, half = clustered_mean_ci(values, list(clusters))
        out[metric] = Figure(mean, half)
    return out


def evaluate_next_item(
    recommenders: Sequence[NextItemRecommender],
    sessions: Sequence[Session],
    *,
    k: int = K,
    max_cases: int | None = None,
    seed: int = 0,
    progress: Callable[[str, int], None] | None = None,
) -> NextItemResult:
    """Ask every recommender for the next item at every case of ``sessions``; score it.

    Parameters
    ----------
    recommenders : sequence of NextItemRecommender
        Fitted methods with distinct names.
    sessions : sequence of Session
        The test sessions (already filtered to items known in training).
    k : int
        List length (HR@k, MRR@k).
    max_cases : int or None
        Evaluate a seeded uniform sample of this many cases (None: all).
    seed : int
        Seed of that sample.
    progress : callable or None
        ``progress(method_name, n_done)`` after every 100 cases and at the end of a method.

    Returns
    -------
    NextItemResult

    Raises
    ------
    ValueError
        For ``k < 1``, duplicate method names, or no case to evaluate.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    names = [r.name for r in recommenders]
    if len(set(names)) != len(names):
        raise ValueError(f"recommenders: expected distinct names, got {names}")
    cases = next_item_cases(sessions, max_cases=max_cases, seed=seed)
    if not cases:
        raise ValueError(
            f"sessions: no next-item case in {len(sessions)} test session(s); each needs at "
            "least 2 clicks on items known in training")
    prefixes = case_prefixes(sessions, cases)
    targets = [sessions[c.session].items[c.t] for c in cases]
    seen = [set(p) for p in prefixes]
    new = np.array([t not in s for t, s in zip(targets, seen, strict=True)], dtype=bool)
    users = [sessions[c.session].user_id for c in cases]
    clusters = [sessions[c.session].session_id for c in cases]
    clusters_new = [c for c, n in zip(clusters, new.tolist(), strict=True) if n]
    results: dict[str, MethodResult] = {}
    for rec in recommenders:
        hit = np.zeros(len(cases))
        rr = np.zeros(len(cases))
        hit_new, rr_new, reshow = [], [], 0
        t0 = time.perf_counter()
        session_rec = rec if isinstance(rec, SessionAwareRecommender) else None
        user_rec = rec if isinstance(rec, UserAwareRecommender) else None
        for j, prefix in enumerate(prefixes):
            ask = k + len(seen[j])
            if session_rec is not None:
                shown = session_rec.recommend_in(sessions[cases[j].session], prefix, ask)
            elif user_rec is not None:
                shown = user_rec.recommend_for(users[j], prefix, ask)
            else:
                shown = rec.recommend(prefix, ask)
            top = shown[:k]
            r = _rank(top, targets[j], k)
            if r >= 0:
                hit[j], rr[j] = 1.0, 1.0 / (r + 1)
            reshow += any(i in seen[j] for i in top)
            if new[j]:
                fresh = [i for i in shown if i not in seen[j]]
                r = _rank(fresh, targets[j], k)
                hit_new.append(float(r >= 0))
                rr_new.append(1.0 / (r + 1) if r >= 0 else 0.0)
            if progress is not None and (j + 1) % 100 == 0:
                progress(rec.name, j + 1)
        if progress is not None:
            progress(rec.name, len(cases))
        m = MethodResult(rec.name, hit, rr, np.asarray(hit_new), np.asarray(rr_new),
                         reshow / len(cases), time.perf_counter() - t0)
        m.summary = _summary(m, clusters, clusters_new)
        results[rec.name] = m
    users_new = [u or c for u, c, n in zip(users, clusters, new.tolist(), strict=True) if n]
    return NextItemResult(results, cases=len(cases), cases_new=int(new.sum()),
                          sessions=len({c.session for c in cases}), k=k, users_new=users_new)


SIMPLE_BASELINES = ("pop", "cooc", "sr", "vsknn")


def best_baseline(result: NextItemResult, metric: str) -> tuple[str, float]:
    """The simple baseline with the highest ``metric`` (a summary key like ``"hr@_new"``)."""
    best = ("", float("nan"))
    for name in SIMPLE_BASELINES:
        m = result.methods.get(name)
        if m is None:
            continue
        value = m.summary[metric].mean
        if not best[0] or value > best[1]:
            best = (name, value)
    return best
