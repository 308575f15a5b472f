"""Offline evaluation of query suggestion on held-out searches.

Completion: for each held-out search, every prefix of its (normalized) query is typed and the
rank of the submitted query among the top-k is recorded: MRR and success@k over all
(query, prefix) pairs, the standard query auto-completion measure. The baseline is
most-popular completion (MPC): all queries starting with the prefix ranked by raw count.
Ours sees what a live request would: the user's profile and the session's previous query
(the held-out period's own sessions only).
Related queries: hit rate of the next distinct query of a held-out session in the top-k.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Sequence

import duckdb
import numpy as np

from funnel.suggest.mining import load_searches
from funnel.suggest.model import QuerySuggester, SuggestConfig
from funnel.vectors import VectorTable


class MostPopularCompletion:
    """MPC baseline and naive index: a sorted list, bisect for the range, scan it for top-k."""

    def fit(self, queries: Sequence[str], counts: Sequence[float] | np.ndarray
            ) -> MostPopularCompletion:
        order = sorted(range(len(queries)), key=queries.__getitem__)
        self.keys_ = [queries[i] for i in order]
        self.counts_ = [float(counts[i]) for i in order]
        return self

    def complete(self, prefix: str, k: int = 10) -> list[str]:
        lo = bisect.bisect_left(self.keys_, prefix)
        hi = bisect.bisect_left(self.keys_, prefix + "\U0010ffff", lo)
        best = heapq.nlargest(k, range(lo, hi), key=self.counts_.__getitem__)
        return [self.keys_[i] for i in best]


def completion_metrics(
    complete: Callable[[str, int, int], list[str]],
    tests: Sequence[str],
    *,
    k: int = 10,
    max_prefix: int = 30,
) -> dict[str, float]:
    """MRR and success@1/@k of ``tests`` given each of their prefixes.

    ``complete(prefix, k, test_index)`` returns the ranked completions; the index lets a
    personalised completer look up the context of that test search.
    """
    rr: list[float] = []
    for t, query in enumerate(tests):
        for n in range(1, min(len(query), max_prefix) + 1):
            got = complete(query[:n], k, t)
            rr.append(1.0 / (got.index(query) + 1) if query in got else 0.0)
    arr = np.asarray(rr) if rr else np.zeros(1)
    return {
        "mrr": float(arr.mean()),
        "success@1": float((arr >= 1.0).mean()),
        f"success@{k}": float((arr > 0).mean()),
        "pairs": float(len(rr)),
    }


def related_hit_rate(
    related: Callable[[str, int], list[str]], pairs: Sequence[tuple[str, str]], *, k: int = 10
) -> float:
    """Share of (query, next query) pairs whose next query is among ``related(query, k)``."""
    if not pairs:
        return 0.0
    return float(np.mean([b in related(a, k) for a, b in pairs]))


def holdout_evaluate(
    con: duckdb.DuckDBPyConnection,
    config: SuggestConfig | None = None,
    *,
    k: int = 10,
    seed: int = 0,
    query_vectors: VectorTable | None = None,
) -> dict[str, float]:
    """Fit on searches before the last ``holdout_fraction`` of time, evaluate on the rest.

    With ``query_vectors`` the related-query hit rate is also reported with embedding
    neighbours merged in (``related_hit@k_with_embeddings``); vectors trained on the whole
    log have seen the held-out period, so that figure is optimistic.
    """
    cfg = config or SuggestConfig()
    ts = con.execute(
        "SELECT epoch_ms(ts) FROM events WHERE event_type = 'search' AND query IS NOT NULL"
    ).fetchnumpy()
    times = np.sort(next(iter(ts.values())).astype(np.int64))
    if len(times) < 20:
        raise ValueError(f"need at least 20 searches to hold some out; got {len(times)}")
    split = int(times[int(len(times) * (1.0 - cfg.holdout_fraction))])
    model = QuerySuggester(cfg).fit(con, until_ms=split)
    test = load_searches(con, config=cfg.mining(), since_ms=split)
    stats = model.query_stats_
    mpc = MostPopularCompletion().fit(model.queries_, stats["count"])

    rng = np.random.default_rng(seed)
    rows = np.arange(len(test))
    if len(rows) > cfg.eval_searches:
        rows = np.sort(rng.choice(rows, cfg.eval_searches, replace=False))
    queries = [str(test.text[r]) for r in rows]
    users = [str(test.user[r]) for r in rows]
    prev_all = test.previous_queries(cfg.session_gap_minutes)
    prev = [prev_all[r] for r in rows]
    ours = completion_metrics(
        lambda p, kk, t: model.complete(p, kk, user_id=users[t], previous_query=prev[t])[0],
        queries, k=k)
    base = completion_metrics(lambda p, kk, t: mpc.complete(p, kk), queries, k=k)
    generic = completion_metrics(lambda p, kk, t: model.complete(p, kk, categories=())[0],
                                 queries, k=k)
    no_prev = completion_metrics(lambda p, kk, t: model.complete(p, kk, user_id=users[t])[0],
                                 queries, k=k)

    pairs: list[tuple[str, str]] = []
    for sess in test.sessions(cfg.session_gap_minutes):
        texts = [str(x) for x in test.text[sess]]
        pairs += [(a, b) for a, b in zip(texts, texts[1:], strict=False) if a != b]
    popular = [model.queries_[q] for q in model.popular_[:k]]
    extra: dict[str, float] = {}
    if query_vectors is not None:
        emb_model = QuerySuggester(cfg).fit(con, until_ms=split, query_vectors=query_vectors)
        extra[f"related_hit@{k}_with_embeddings"] = related_hit_rate(emb_model.related, pairs,
                                                                     k=k)
    return {
        **extra,
        "mrr_ours": ours["mrr"],
        "mrr_mpc": base["mrr"],
        "mrr_ours_unpersonalized": generic["mrr"],
        "mrr_ours_no_previous_query": no_prev["mrr"],
        f"success@{k}_ours": ours[f"success@{k}"],
        f"success@{k}_mpc": base[f"success@{k}"],
        "success@1_ours": ours["success@1"],
        "success@1_mpc": base["success@1"],
        "eval_prefixes": ours["pairs"],
        "seen_query_share": float(np.mean([q in model._index for q in queries])),
        f"related_hit@{k}": related_hit_rate(model.related, pairs, k=k),
        f"related_hit@{k}_popular": related_hit_rate(lambda a, kk: popular[:kk], pairs, k=k),
        "related_pairs": float(len(pairs)),
    }
