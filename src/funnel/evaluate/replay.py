"""Replay held-out cases through the serving :class:`~funnel.engine.core.Engine` and baselines.

Variants, all asked the same cases in the same run:

- ``funnel``: ``Engine.run`` exactly as ``POST /search`` calls it (recall -> rank -> re-rank);
- ``no_personalization``: the same engine asked as an anonymous visitor: no user id (the
  ranker's ``user_id`` embedding falls back to out-of-vocabulary) and an empty
  :class:`RecentActions` (no session features, no recent items for co-visitation recall, no
  session market for a browse feed). Everything the funnel knows about this user is removed;
- ``no_session``: the user id kept, the session state emptied (the session features' share);
- ``no_rerank``: the same engine with the re-rank method ``none`` (the ranker's order);
- ``popularity``: the artifact's popularity recall list of the request's market alone;
- ``no_generative`` (only when the artifact has the generative recall source): the same
  engine with that source left out of the recall merger, so ``funnel vs no_generative`` is
  what generative recall adds to the served list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from funnel.evaluate.cases import KINDS, Case, HeldOut
from funnel.evaluate.metrics import catalog_coverage, clustered_mean_ci, list_metrics, mean_ci
from funnel.features.personalization import RecentActions
from funnel.recall.base import RecallRequest
from funnel.rerank.metrics import entropy, intra_list_distance

if TYPE_CHECKING:
    from funnel.engine.core import Engine

VARIANTS = ("funnel", "no_personalization", "no_session", "no_rerank", "popularity")
OPTIONAL_VARIANTS = ("no_generative",)
"""Replayed only when the engine has what they take away (:func:`variants_of`)."""
GENERATIVE = "generative"
OFFLINE_RECALL_TIMEOUT_S = 600.0
"""Offline, no source is dropped for being slow (the figures must not depend on machine load)."""


def offline_engine(engine: Engine) -> Engine:
    """A copy of ``engine`` with a recall deadline no replay can hit, so results are
    deterministic (``engine`` itself is not changed: a loaded engine is never mutated)."""
    return engine.with_recall_deadline(OFFLINE_RECALL_TIMEOUT_S)


def without_rerank(engine: Any) -> Any:
    """A copy of ``engine`` without the diversity step and the scatter rules, on browse feeds
    and searches alike (merchandising and sponsored slots stay: they are business rules, not
    a trade of relevance for variety), so ``funnel vs no_rerank`` is what diversity costs."""
    def plain(pipe: Any) -> Any:
        return pipe.with_config(dataclasses.replace(pipe.config, method="none",
                                                    search_method="none", scatter=()))

    return dataclasses.replace(engine, rerank=plain(engine.rerank),
                               search_rerank=plain(engine.search_rerank))


def variants_of(engine: Any) -> tuple[str, ...]:
    """The variants a replay of ``engine`` asks: :data:`VARIANTS`, and ``no_generative`` when
    the engine has the generative recall source."""
    return VARIANTS + (("no_generative",) if GENERATIVE in engine.recall.sources else ())


@dataclass
class VariantScores:
    """Per-case NDCG / RR / hit by kind, and every list shown."""

    ndcg: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    rr: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    hit: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    lists: list[list[str]] = field(default_factory=list)
    tied: list[float] = field(default_factory=list)
    """Per list: share of adjacent top-k pairs whose (ranker) scores are exactly equal."""


@dataclass
class ReplayResult:
    scores: dict[str, VariantScores]
    timings: list[dict[str, float]]
    """Per funnel request: the engine's per-stage timings in ms."""
    users: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    """Per kind, the user of each case (the cluster of the paired intervals)."""


def _popularity(engine: Any, case: Case, k: int) -> list[str]:
    source = engine.recall.sources.get("popularity")
    if source is None:
        return []
    request = RecallRequest(user_id=case.user_id, market=case.market, k=k)
    return [str(i) for i in source.candidates(request).item_ids.tolist()]


def replay(engine: Any, held: HeldOut, *, k: int = 10,
           progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Ask every variant for a ``k``-list at every held-out case; score it against the targets."""
    variants = variants_of(engine)
    engines = {"funnel": engine, "no_personalization": engine, "no_session": engine,
               "no_rerank": without_rerank(engine)}
    if "no_generative" in variants:
        engines["no_generative"] = engine.without_recall_source(GENERATIVE)
    empty = RecentActions(max_len=held_state_len(held))
    scores = {v: VariantScores() for v in variants}
    timings: list[dict[str, float]] = []
    users: dict[str, list[str]] = {k: [] for k in KINDS}
    for kind in KINDS:
        for case in held.cases[kind]:
            users[kind].append(case.user_id)
            for variant in variants:
                if variant == "popularity":
                    shown = _popularity(engine, case, k)
                else:
                    anonymous = variant == "no_personalization"
                    state = empty if variant in ("no_personalization", "no_session") \
                        else case.state
                    res = engines[variant].run(query=case.query,
                                               user_id=None if anonymous else case.user_id,
                                               market=case.market, filters={}, k=k, state=state,
                                               now_ms=case.ts_ms)
                    shown = list(res.item_ids)
                    if variant == "funnel":
                        timings.append(dict(res.timings_ms))
                    if len(res.scores) >= 2:
                        sc = np.asarray(res.scores, dtype=np.float64)
                        scores[variant].tied.append(float(np.mean(sc[1:] == sc[:-1])))
                ndcg, rr, hit = list_metrics(shown, case.targets, k)
                s = scores[variant]
                s.ndcg[kind].append(ndcg)
                s.rr[kind].append(rr)
                s.hit[kind].append(hit)
                s.lists.append(shown)
            if progress is not None:
                progress(1)
    return ReplayResult(scores, timings, users)


def held_state_len(held: HeldOut) -> int:
    for rows in held.cases.values():
        if rows:
            return rows[0].state.max_len
    return 50


def quality_figures(result: ReplayResult, k: int) -> dict[str, float]:
    """Flat figures ``{variant}.{kind}.ndcg@k|mrr@k|hit@k`` (+ ``.ci95`` and ``.n``)."""
    out: dict[str, float] = {}
    for variant, s in result.scores.items():
        for kind in KINDS:
            n = len(s.ndcg[kind])
            if not n:
                continue
            out[f"{variant}.{kind}.n"] = float(n)
            for name, values in ((f"ndcg@{k}", s.ndcg[kind]), (f"mrr@{k}", s.rr[kind]),
                                 (f"hit@{k}", s.hit[kind])):
                mean, half = mean_ci(values)
                out[f"{variant}.{kind}.{name}"] = mean
                out[f"{variant}.{kind}.{name}.ci95"] = half
    return out


def margin_figures(result: ReplayResult, k: int, base: str, *, against: str = "funnel"
                   ) -> dict[str, float]:
    """Paired gains of ``against`` over ``base`` per kind: the mean per-case difference of
    NDCG@k, its 95% interval clustered by user (``.ci95``: a user's requests share taste and
    history, so they are not independent draws) and the plain per-case one (``.ci95_cases``),
    and the share of cases where the two lists differ at all (``.changed``)."""
    out: dict[str, float] = {}
    a, b = result.scores[against], result.scores[base]
    offset = 0
    for kind in KINDS:
        n = len(a.ndcg[kind])
        if not n:
            continue
        diff = np.asarray(a.ndcg[kind]) - np.asarray(b.ndcg[kind])
        users = result.users[kind] if len(result.users[kind]) == n else [str(i) for i in range(n)]
        mean, half = clustered_mean_ci(diff, users)
        key = f"gain.{against}_vs_{base}.{kind}.ndcg@{k}"
        out[key] = mean
        out[f"{key}.ci95"] = half
        out[f"{key}.ci95_cases"] = mean_ci(diff)[1]
        lists_a = a.lists[offset:offset + n]
        lists_b = b.lists[offset:offset + n]
        out[f"{key}.changed"] = float(np.mean([x[:k] != y[:k] for x, y in zip(lists_a, lists_b,
                                                                               strict=True)]))
        offset += n
        base_mean = float(np.mean(b.ndcg[kind]))
        if base_mean > 0:
            out[f"gain.{against}_vs_{base}.{kind}.ndcg@{k}.relative"] = mean / base_mean
    return out


def diversity_figures(engine: Any, result: ReplayResult, k: int) -> dict[str, float]:
    """Per variant: mean intra-list distance (item vectors), brand entropy, distinct
    categories per list, and catalog coverage over every list shown."""
    out: dict[str, float] = {}
    by_row = engine.catalog_vectors  # item vectors by catalog row (None: no vectors)
    n_items = len(engine.catalog.ids)
    out["catalog.items"] = float(n_items)
    for variant, s in result.scores.items():
        lists = [lst for lst in s.lists if lst]
        if not lists:
            continue
        ild, ent, cats = [], [], []
        for lst in lists:
            attrs = engine.catalog.attributes(lst)
            if by_row is not None:
                at = engine.catalog.rows(list(lst))
                vec_rows = np.where(at >= 0, by_row.row_of[at], -1)
                known = vec_rows[vec_rows >= 0]  # in list order, items with a vector
                if len(known) >= 2:
                    ild.append(intra_list_distance(by_row.table.vectors[known]))
            if any(b is not None for b in attrs["brand"]):
                ent.append(entropy(list(attrs["brand"])))
            if any(c is not None for c in attrs["category"]):
                cats.append(len({c for c in attrs["category"] if c is not None}))
        if ild:
            out[f"{variant}.ild@{k}"] = float(np.mean(ild))
        if ent:  # a catalog without brands has no brand entropy (not zero)
            out[f"{variant}.brand_entropy@{k}"] = float(np.mean(ent))
        if cats:
            out[f"{variant}.distinct_categories@{k}"] = float(np.mean(cats))
        out[f"{variant}.catalog_coverage"] = catalog_coverage(lists, n_items)
        if s.tied:
            out[f"{variant}.tied_adjacent_scores@{k}"] = float(np.mean(s.tied))
    return out


def latency_figures(timings: Sequence[dict[str, float]]) -> dict[str, float]:
    """p50 / p95 / p99 / mean ms of each stage the engine timed."""
    out: dict[str, float] = {}
    names = sorted({name for t in timings for name in t})
    for name in names:
        v = np.asarray([t[name] for t in timings if name in t], dtype=np.float64)
        out[f"latency.{name}.p50_ms"] = float(np.percentile(v, 50))
        out[f"latency.{name}.p95_ms"] = float(np.percentile(v, 95))
        out[f"latency.{name}.p99_ms"] = float(np.percentile(v, 99))
        out[f"latency.{name}.mean_ms"] = float(v.mean())
    return out


def tradeoff_lists(engine: Any, held: HeldOut, *, depth: int = 50, max_lists: int = 100
                   ) -> list[Any]:
    """The ranker's top-``depth`` lists (re-rank off) of held-out cases, with the chosen items
    as gains, for :func:`funnel.rerank.curve.tradeoff_curve`."""
    from funnel.rerank.curve import RankedList

    plain = without_rerank(engine)
    out: list[RankedList] = []
    for kind in KINDS:
        for case in held.cases[kind]:
            if len(out) >= max_lists:
                return out
            res = plain.run(query=case.query, user_id=case.user_id, market=case.market,
                            filters={}, k=depth, state=case.state, now_ms=case.ts_ms)
            organic = [j for j, kind_ in enumerate(res.kinds) if kind_ == "organic"]
            if len(organic) < 2:
                continue
            ids = [res.item_ids[j] for j in organic]
            scores = np.asarray([res.scores[j] for j in organic], dtype=np.float64)
            gains = np.array([1.0 if i in case.targets else 0.0 for i in ids])
            # the curve explores the knob with every similarity input (vectors, category,
            # brand), as a browse feed has them; searches are served with brand only
            feats = engine.rerank_features(ids, search=False)
            out.append(RankedList(ids, scores, feats, gains))
    return out
