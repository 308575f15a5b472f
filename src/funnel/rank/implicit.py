"""Training rows from clicks alone: each click against the recall candidates of its moment.

A click log without impressions (YooChoose, DIGINETICA views, Taobao UserBehavior) never says
what a user was shown and skipped, so the ranker learns which candidate of a recall list the
user clicked instead (the implicit-feedback recipe, e.g. Covington et al. 2016; Yi et al. 2019):
one group per click, holding the clicked item (label 1) and negatives drawn from the list
serving would rank at that moment (the first ``rank_k`` merged candidates, the session's clicks
left out): ``random_negatives`` drawn uniformly from it (that is the distribution the ranker
must order), after the ``hard_negatives`` best of it (0 by default: over-represented, they
taught the ranker that a high fused rank means a negative). A negative drawn from the whole
catalog would teach it to tell recalled items from never-recalled ones, which serving never
asks.

Recall is asked as it would answer for a session it never saw: the sources are fit
``folds`` times, each without one fold of sessions, and a click is asked of the ones fit
without its own session (:func:`funnel.recall.as_of.out_of_fold_recall`): a source fit on the
whole log has counted every training transition, and its rank of the clicked item would be
the label. Each row carries what recall
knew about the candidate (:mod:`funnel.rank.recall_features`), the same columns serving
computes from the request's merged candidates. A click whose next item no source recalled
has no group (serving could not show that item either); ``implicit.positive_recalled``
records their share.

Every other feature is point-in-time, as in :mod:`funnel.features.training_set`: item
counters count events strictly before the click, and the user's recent clicks are replayed in
time order through :func:`funnel.features.personalization.observe`. The rows have the columns
of :func:`funnel.features.training_set.build_training_set`, so the rankers, the feature specs
and serving are the ones impressions train.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from funnel._checks import validate_params
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
from funnel.features.training_set import VectorsFor, replay_sql
from funnel.rank.recall_features import (
    RECALL_FEATURE_SOURCES,
    recall_feature_columns,
    recall_feature_names,
)
from funnel.recall.base import RecallRequest

RECENT_ITEMS = 5
"""Recent clicks a recall request carries (``Engine.run``'s ``recent_items``)."""
SEEN_WINDOW = 50
"""Clicks of the session a browse feed leaves out (the server's online state keeps 50 actions;
``Engine._unseen``): a training list leaves them out too."""


@dataclass(frozen=True)
class ImplicitConfig:
    """How click-only training rows are drawn (the rank stage's implicit mode)."""

    hard_negatives: int = 0
    """Negatives from the head of the list serving ranks."""
    random_negatives: int = 150
    """Negatives drawn uniformly from the rest of the list serving ranks."""
    folds: int = 5
    """Session folds of the out-of-fold recall (each click asked of sources without its own)."""
    max_groups: int = 8_000
    """Most clicks turned into groups (a uniform sample above it keeps a build fast)."""
    recall_k: int = 1000
    """Merged candidates per request, as serving asks (``Engine.recall_k``)."""
    rank_k: int = 500
    """Candidates serving ranks (``Engine.rank_k``): the length of an evaluation list."""
    eval_fraction: float = 0.2
    """The share of clicks, in the sessions that started last, kept out of training, each with
    its whole candidate list: the build compares the ranker's order with the fused recall
    order on them."""
    eval_max_clicks: int = 500
    """At most this many of them (a list is ``rank_k`` rows)."""
    recent_k: int = 10
    position: int = 1
    """The position every row gets: the one serving scores at (``serving.json``)."""
    seed: int = 0

    def __post_init__(self) -> None:
        def count(v: Any) -> bool:
            return isinstance(v, int) and v >= 0

        validate_params(vars(self), {
            "hard_negatives": (count, "an int >= 0"),
            "random_negatives": (count, "an int >= 0"),
            "folds": (lambda v: count(v) and v >= 2, "an int >= 2"),
            "max_groups": (lambda v: count(v) and v > 0, "a positive int"),
            "recall_k": (lambda v: count(v) and v > 0, "a positive int"),
            "rank_k": (lambda v: count(v) and v > 0, "a positive int"),
            "eval_fraction": (lambda v: isinstance(v, int | float) and 0 <= v < 1,
                              "a float in [0, 1)"),
            "eval_max_clicks": (count, "an int >= 0"),
            "recent_k": (lambda v: count(v) and v > 0, "a positive int"),
        })
        if self.hard_negatives + self.random_negatives == 0:
            raise ValueError("ImplicitConfig: hard_negatives + random_negatives must be >= 1 "
                             "(a group needs a negative)")

    @property
    def negatives(self) -> int:
        return self.hard_negatives + self.random_negatives


def counts_before(
    event_items: np.ndarray, event_ts: np.ndarray, items: np.ndarray, ts: np.ndarray
) -> np.ndarray:
    """For each (``items[i]``, ``ts[i]``): events of that item strictly before ``ts[i]``.

    ``event_items`` / ``items`` are int codes; ``*_ts`` int64 ms. One sort and a binary search
    over (item, ts) keys, so counting is O((n + m) log n)."""
    if not len(event_items):
        return np.zeros(len(items), dtype=np.int64)
    t0 = min(int(event_ts.min()), int(ts.min()) if len(ts) else 0)
    span = max(int(event_ts.max()), int(ts.max()) if len(ts) else 0) - t0 + 2
    keys = np.sort(event_items.astype(np.int64) * span + (event_ts - t0))
    lo = np.searchsorted(keys, items.astype(np.int64) * span, side="left")
    at = np.searchsorted(keys, items.astype(np.int64) * span + (ts - t0), side="left")
    return (at - lo).astype(np.int64)


@dataclass
class _Groups:
    """Rows being collected: one group per click, with its recall and session columns."""

    rows: dict[str, list[Any]]
    rec: dict[str, list[np.ndarray]]
    feats: dict[str, list[np.ndarray]]
    batch: list[tuple[int, list[str], RecentActions, ItemVectorLookup]]

    @classmethod
    def empty(cls) -> _Groups:
        return cls(defaultdict(list), defaultdict(list), defaultdict(list), [])

    def add(self, event_id: str, user: str, ts: int, recent: RecentActions, group: list[str],
            sources: list[str], rec: dict[str, np.ndarray], lookup: ItemVectorLookup | None,
            ) -> None:
        rows = self.rows
        for name, values in rec.items():
            self.rec[name].append(values)
        if lookup is not None:
            if _clicks_only(recent):  # computed for all such groups at once, in table()
                self.batch.append((len(rows["item_id"]), group, recent, lookup))
            else:
                f = personalization_features(group, recent, lookup, now_ms=ts)
                self.feats["_at"].append(np.array([len(rows["item_id"])]))
                for name in FEATURE_NAMES:
                    self.feats[name].append(np.asarray(f[name], dtype=np.float32))
        k = len(group)
        rows["group_id"] += [event_id] * k
        rows["event_id"] += [f"{event_id}#{j}" for j in range(k)]
        rows["ts_ms"] += [ts] * k
        rows["user_id"] += [user] * k
        rows["item_id"] += group
        rows["recent_clicks"] += [list(recent.clicks)] * k
        rows["click"] += [True] + [False] * (k - 1)
        rows["source"] += sources

    def table(self, con: duckdb.DuckDBPyConnection, names: list[str], has_vectors: bool,
              attrs: dict[str, tuple[Any, ...]], config: ImplicitConfig) -> pa.Table:
        n = len(self.rows["item_id"])
        session = _session_columns(n, self.feats, self.batch) if has_vectors else None
        recall_cols = {name: (np.concatenate(self.rec[name]) if self.rec[name] else
                              np.zeros(0, dtype=np.float32)) for name in names}
        return _assemble(con, self.rows, session, recall_cols, attrs, config)


def implicit_training_set(
    con: duckdb.DuckDBPyConnection,
    config: ImplicitConfig | None = None,
    vectors: ItemVectorLookup | None = None,
    vectors_for: VectorsFor | None = None,
    *,
    recall_config: Any = None,
    sources: tuple[str, ...] = RECALL_FEATURE_SOURCES,
) -> tuple[pa.Table, pa.Table, dict[str, float]]:
    """``(train, lists, info)``: one group per click (the click + its negatives) in time
    order; the full candidate lists (the first ``rank_k`` merged candidates, as serving ranks
    them) of the clicks of the sessions that started last (:func:`_latest_sessions`), kept
    out of ``train``, on which the build
    compares the ranker's order with the fused recall order; and the sampling figures
    (``implicit.*``) to record with the model.

    Columns are those of :func:`funnel.features.training_set.build_training_set` (labels
    ``click`` / ``booking``, ``booking`` always false), the ``rec_*`` columns of ``sources``
    (:func:`funnel.rank.recall_features.recall_feature_columns`) and ``source`` (positive,
    hard, random). ``recall_config``: the served ``RecallConfig`` (quotas, settings). The
    ``items`` relation must hold the catalog (``funnel.rank.build`` registers the artifact's).
    """
    from funnel.recall.as_of import out_of_fold_recall

    config = config or ImplicitConfig()
    rng = np.random.default_rng(config.seed)
    oof = out_of_fold_recall(con, config.folds, recall_config)
    ev = con.sql(replay_sql()).to_arrow_table().to_pydict()
    attrs = {r[0]: r[1:] for r in con.sql(
        "SELECT item_id, market, category, brand, title, price, bid FROM items").fetchall()}
    n = len(ev["event_id"])
    labelled = [r for r in range(n) if ev["event_type"][r] == "click"
                and ev["event_id"][r] in oof.fold_of_event]
    if len(labelled) > config.max_groups:
        labelled = sorted(rng.choice(labelled, size=config.max_groups, replace=False).tolist())
    held = _latest_sessions(ev, labelled, oof.session_of_event, config)
    chosen = set(labelled)

    train, lists = _Groups.empty(), _Groups.empty()
    names = recall_feature_names(sources)
    state: dict[str, RecentActions] = defaultdict(lambda: RecentActions(max_len=STATE_WINDOW))
    seen: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=SEEN_WINDOW))
    asked = recalled = 0
    n_hard = n_random = 0
    for r in range(n):
        user, ts, kind, item = ev["user_id"][r], ev["ts_ms"][r], ev["event_type"][r], \
            ev["item_id"][r]
        # the state of this session: a next-item request carries the session's clicks, not
        # the user's clicks of other days (those made recall's lists stale for a session's
        # first clicks, and the rows unlike what serving is asked)
        key = oof.session_of_event.get(ev["event_id"][r], user)
        recent = state[key]
        merger = oof.merger_for(ev["event_id"][r]) if r in chosen and recent.clicks else None
        if merger is not None:
            asked += 1
            merged = merger.recall(RecallRequest(
                recent_items=tuple(recent.clicks[-RECENT_ITEMS:]), k=config.recall_k))
            clicked = set(seen[key])  # serving leaves these out; a re-visit has no group
            ids = merged.item_ids.tolist()
            where = {c: j for j, c in enumerate(ids)}
            if item in where and item not in clicked:
                recalled += 1
                lookup = vectors if vectors_for is None or vectors is None else vectors_for(user)
                cols = recall_feature_columns(merged.provenance, sources)
                others = [j for j in range(len(ids)) if ids[j] != item and ids[j] not in clicked]
                if r in held:  # the whole list serving would rank, positive first
                    at = [where[item], *others[: config.rank_k - 1]]
                    kinds = ["positive"] + ["list"] * (len(at) - 1)
                    target = lists
                else:
                    shown = others[: config.rank_k - 1]  # the list serving would rank
                    hard = shown[: config.hard_negatives]
                    rest = shown[config.hard_negatives:]
                    take = min(config.random_negatives, len(rest))
                    rand = sorted(rng.choice(len(rest), size=take, replace=False).tolist()) \
                        if take else []
                    at = [where[item], *hard, *(rest[j] for j in rand)]
                    kinds = ["positive"] + ["hard"] * len(hard) + ["random"] * take
                    n_hard += len(hard)
                    n_random += take
                    target = train
                idx = np.asarray(at)
                target.add(ev["event_id"][r], user, ts, clip_state(recent, config.recent_k),
                           [ids[j] for j in at], kinds,
                           {c: v[idx] for c, v in cols.items()}, lookup)
        if kind == "click":
            seen[key].append(item)
        state[key] = observe(
            recent, kind, item, ts_ms=ts, dwell_ms=ev["dwell_ms"][r],
            request_id=ev["request_id"][r], position=ev["position"][r],
        )
    has_vectors = vectors is not None
    table = train.table(con, names, has_vectors, attrs, config)
    full = lists.table(con, names, has_vectors, attrs, config)
    n_groups = len(set(train.rows["group_id"]))
    groups = max(1, n_groups)
    info = {
        "implicit.folds": float(config.folds),
        "implicit.groups": float(n_groups),
        "implicit.eval_lists": float(len(set(lists.rows["group_id"]))),
        "implicit.clicks_asked": float(asked),
        "implicit.positive_recalled": recalled / max(1, asked),
        "implicit.hard_negatives_per_positive": n_hard / groups,
        "implicit.random_negatives_per_positive": n_random / groups,
        "implicit.positive_share": float(np.mean(train.rows["click"])) if train.rows["click"]
        else 0.0,
    }
    return table, full, info


def _latest_sessions(ev: dict[str, list[Any]], labelled: list[int],
                     session_of: dict[str, str], config: ImplicitConfig) -> set[int]:
    """The clicks of the sessions that started last (``eval_fraction`` of the labelled clicks,
    at most ``eval_max_clicks``, whole sessions): held out as the next-item protocol holds out
    test sessions, so the comparison with the fused order sees new sessions' short prefixes,
    not the latest clicks of long ones (on MovieLens those favoured the ranker, 0.32 vs 0.26
    HR@20, while test sessions did not)."""
    budget = min(config.eval_max_clicks, int(config.eval_fraction * len(labelled)))
    if not budget:
        return set()
    by_session: dict[str, list[int]] = defaultdict(list)
    for r in labelled:
        by_session[session_of.get(ev["event_id"][r], ev["user_id"][r])].append(r)
    start = {sid: min(ev["ts_ms"][r] for r in rows) for sid, rows in by_session.items()}
    held: set[int] = set()
    for sid in sorted(by_session, key=lambda sid: (-start[sid], sid)):
        if len(held) >= budget:
            break
        held.update(by_session[sid])
    return held


def _clicks_only(recent: RecentActions) -> bool:
    """True when ``recent`` holds only clicks and bookings (no skips, long clicks, impressions
    or preset user type): its session features are then what :func:`click_session_features`
    computes."""
    return not (recent.skips or recent.long_clicks or recent.shown or recent.user_type)


def _max_centroid_sims(
    cand: np.ndarray, cand_found: np.ndarray, cand_group: np.ndarray, n_groups: int,
    history: list[tuple[str, ...]], vectors: ItemVectorLookup, by_market: bool,
) -> np.ndarray:
    """Per candidate: max cosine to the centroids of its group's history (one centroid per
    market when ``by_market``), 0 without one: ``_sim(cand, found, _centroids(...))``."""
    n = len(cand)
    out = np.zeros(n, dtype=np.float32)
    pairs = [(g, i) for g, h in enumerate(history) for i in h]
    rows, found = vectors.rows([i for _, i in pairs])
    if not found.any():
        return out
    group = np.array([g for g, _ in pairs], dtype=np.int64)[found]
    rows = rows[found]
    market = np.zeros(len(rows), dtype=np.int64)
    if by_market and vectors.item_market is not None:
        get = vectors.item_market.get
        names = [str(get(i, "")) for (_, i), f in zip(pairs, found.tolist(), strict=True) if f]
        market = np.unique(np.array(names, dtype=str), return_inverse=True)[1].astype(np.int64)
    width = int(market.max()) + 1
    keys, cell = np.unique(group * width + market, return_inverse=True)
    sums = np.zeros((len(keys), vectors.dim), dtype=np.float64)
    np.add.at(sums, cell, vectors.vectors[rows])
    cents = sums / np.bincount(cell)[:, None]
    cents = (cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12)
             ).astype(np.float32)
    per_group = np.bincount(keys // width, minlength=n_groups)  # centroids, contiguous by group
    first = np.r_[0, np.cumsum(per_group)[:-1]]
    reps = per_group[cand_group]
    pair_cand = np.repeat(np.arange(n), reps)
    offset = np.arange(len(pair_cand)) - np.repeat(np.cumsum(reps) - reps, reps)
    dots = np.einsum("pd,pd->p", cand[pair_cand], cents[first[cand_group][pair_cand] + offset])
    best = np.full(n, -np.inf, dtype=np.float64)
    np.maximum.at(best, pair_cand, dots)
    ok = np.isfinite(best) & cand_found
    out[ok] = best[ok]
    return out


def click_session_features(
    groups: list[list[str]], clicks: list[tuple[str, ...]], vectors: ItemVectorLookup,
    bookings: list[tuple[str, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """``personalization_features(group, RecentActions(clicks=c, bookings=b), vectors)`` for
    many groups at once, concatenated (``{name: (sum of group sizes,) float32}``); equal to it
    up to float rounding (``tests/core/test_events_only_build`` holds it there).

    A click log replays ~70k states whose history is clicks (and bookings); one call per state
    spends its time in numpy overhead, so here the centroids of all states are built in a few
    vectorized passes, grouped by market as :meth:`ItemVectorLookup._centroids` does."""
    bookings = bookings if bookings is not None else [()] * len(groups)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    n = int(sizes.sum())
    flat = [i for g in groups for i in g]
    out = {name: np.zeros(n, dtype=np.float32) for name in FEATURE_NAMES}
    if not n:
        return out
    rows, found = vectors.rows(flat)
    cand = vectors.vectors[rows]  # (n, d)
    group = np.repeat(np.arange(len(groups)), sizes)
    args = (cand, found, group, len(groups))
    out["emb_click_sim"] = _max_centroid_sims(*args, clicks, vectors, True)
    out["emb_last_click_sim"] = _max_centroid_sims(*args, [c[-1:] for c in clicks], vectors,
                                                   False)
    out["emb_book_sim"] = _max_centroid_sims(*args, bookings, vectors, False)
    out["user_item_clicks"] = np.asarray(
        [c.count(i) for g, c in zip(groups, clicks, strict=True) for i in g], dtype=np.float32)
    if vectors.types is not None:  # one similarity call per distinct user type
        types = vectors.types
        kinds: dict[tuple[str, ...], str] = {}
        user_type = [kinds.setdefault(b, types.user_type(b)) for b in bookings]
        at = np.r_[0, np.cumsum(sizes)]
        by_type: dict[str, list[int]] = {}
        for g, t in enumerate(user_type):
            by_type.setdefault(t, []).extend(range(at[g], at[g + 1]))
        for t, idx in by_type.items():
            out["emb_type_sim"][idx] = types.similarities(t, [flat[j] for j in idx])
    return out


def _session_columns(
    n: int,
    feats: dict[str, list[np.ndarray]],
    batch: list[tuple[int, list[str], RecentActions, ItemVectorLookup]],
) -> dict[str, np.ndarray]:
    """The ``FEATURE_NAMES`` columns of all rows: the clicks-only groups in batches (one per
    vector lookup: out-of-fold vectors differ by user fold), the rest as computed one by one."""
    out = {name: np.zeros(n, dtype=np.float32) for name in FEATURE_NAMES}
    by_lookup: dict[int, list[tuple[int, list[str], RecentActions, ItemVectorLookup]]] = {}
    for entry in batch:
        by_lookup.setdefault(id(entry[3]), []).append(entry)
    for entries in by_lookup.values():
        cols = click_session_features([e[1] for e in entries],
                                      [e[2].clicks for e in entries], entries[0][3],
                                      [e[2].bookings for e in entries])
        at = np.concatenate([np.arange(e[0], e[0] + len(e[1])) for e in entries])
        for name in FEATURE_NAMES:
            out[name][at] = cols[name]
    for j, start in enumerate(feats.get("_at", [])):
        for name in FEATURE_NAMES:
            values = feats[name][j]
            out[name][int(start[0]): int(start[0]) + len(values)] = values
    return out


def _assemble(
    con: duckdb.DuckDBPyConnection,
    rows: dict[str, list[Any]],
    session: dict[str, np.ndarray] | None,
    recall_cols: dict[str, np.ndarray],
    attrs: dict[str, tuple[Any, ...]],
    config: ImplicitConfig,
) -> pa.Table:
    """The rows as a training-set table in time order, with point-in-time item counters."""
    n = len(rows["item_id"])
    ts = np.asarray(rows["ts_ms"], dtype=np.int64)
    item_ids = rows["item_id"]
    counted = con.sql(
        "SELECT item_id, epoch_ms(ts) AS ts_ms, event_type FROM events "
        "WHERE item_id IS NOT NULL AND event_type IN ('impression', 'click', 'booking')"
    ).to_arrow_table().to_pydict()
    vocab = {i: c for c, i in enumerate(dict.fromkeys([*counted["item_id"], *item_ids]))}
    ev_items = np.fromiter((vocab[i] for i in counted["item_id"]), np.int64,
                           len(counted["item_id"]))
    ev_ts = np.asarray(counted["ts_ms"], dtype=np.int64)
    ev_kind = np.asarray(counted["event_type"], dtype=object)
    codes = np.fromiter((vocab[i] for i in item_ids), np.int64, n)
    before = {
        name: counts_before(ev_items[ev_kind == kind], ev_ts[ev_kind == kind], codes, ts)
        for name, kind in (("item_imps_before", "impression"),
                           ("item_clicks_before", "click"),
                           ("item_bookings_before", "booking"))
    }
    label = np.asarray(rows["click"], dtype=bool)
    prior = float(label.mean()) if n else 0.0
    none: tuple[Any, ...] = (None,) * 6
    item_attrs = [attrs.get(i, none) for i in item_ids]
    cols: dict[str, Any] = {
        "event_id": pa.array(rows["event_id"], pa.string()),
        "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "user_id": pa.array(rows["user_id"], pa.string()),
        "item_id": pa.array(item_ids, pa.string()),
        "request_id": pa.nulls(n, pa.string()),
        "group_id": pa.array(rows["group_id"], pa.string()),
        "position": pa.array(np.full(n, config.position, dtype=np.int64)),
    }
    for j, name in enumerate(("market", "category", "brand", "title")):
        cols[name] = pa.array([a[j] for a in item_attrs], pa.string())
    for j, name in ((4, "price"), (5, "bid")):
        cols[name] = pa.array([a[j] for a in item_attrs], pa.float64())
    cols["query"] = pa.array([""] * n, pa.string())
    for name, values in before.items():
        cols[name] = pa.array(values)
    imps = before["item_imps_before"].astype(np.float64)
    clicks = before["item_clicks_before"].astype(np.float64)
    cols["item_ctr_before"] = pa.array((clicks + 10 * prior) / (imps + 10))
    cols["recent_clicks"] = pa.array(rows["recent_clicks"], type=pa.list_(pa.string()))
    cols["n_recent_clicks"] = pa.array([len(r) for r in rows["recent_clicks"]], pa.int64())
    match = query_match_features([""] * n, *([None] * n for _ in range(4)))
    for name, values in match.items():
        cols[name] = pa.array(values, type=pa.float32())
    if session is not None:
        for name in FEATURE_NAMES:
            cols[name] = pa.array(session[name])
    cols["click"] = pa.array(label)
    cols["booking"] = pa.array(np.zeros(n, dtype=bool))
    for name, values in recall_cols.items():
        cols[name] = pa.array(np.asarray(values, dtype=np.float32))
    cols["source"] = pa.array(rows["source"], pa.string())
    table = pa.table(cols)
    order = np.lexsort((np.arange(n), ts))  # time order; a group's rows stay together
    return table.take(pa.array(order)).replace_schema_metadata(
        {b"negative_rate": b"1.0", b"implicit": b"1"})
