"""Offline evaluation of item embeddings as Grbovic & Cheng (2018, sec. 4.1) do it.

All functions take plain ``ids`` + unit-length ``vectors`` (the shared vector-table format), so
they score ours, gensim's, or any other embedding the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from funnel.embed.corpus import as_sessions_table


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def split_sessions(sessions: Any, test_fraction: float = 0.2) -> tuple[Any, Any]:
    """Chronological split: the last ``test_fraction`` of sessions (table order) is the test."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"The 'test_fraction' parameter must be in (0, 1). Got {test_fraction!r} instead."
        )
    table = as_sessions_table(sessions)
    cut = int(round(table.num_rows * (1.0 - test_fraction)))
    return table.slice(0, cut), table.slice(cut)


def next_click_metrics(
    ids: Sequence[str], vectors: np.ndarray, sessions: Any, *, k: int = 10, batch: int = 1024
) -> dict[str, float]:
    """HR@k and MRR of predicting each session's last click from the click before it.

    Every known item is a candidate except the query item; sessions whose two items are
    unknown or identical are skipped (their count is reported as ``n``).
    """
    index = {t: i for i, t in enumerate(ids)}
    vecs = _unit(np.asarray(vectors, dtype=np.float32))
    queries, targets = [], []
    for row in as_sessions_table(sessions).column("items").to_pylist():
        clicks = [c for i, c in enumerate(row or []) if i == 0 or c != row[i - 1]]
        if len(clicks) < 2:
            continue
        q, t = index.get(clicks[-2]), index.get(clicks[-1])
        if q is None or t is None or q == t:
            continue
        queries.append(q)
        targets.append(t)
    if not queries:
        return {f"hr@{k}": 0.0, "mrr": 0.0, "n": 0.0}
    q_arr, t_arr = np.array(queries), np.array(targets)
    ranks = np.empty(len(queries), dtype=np.int64)
    for lo in range(0, len(queries), batch):
        qs, ts = q_arr[lo:lo + batch], t_arr[lo:lo + batch]
        scores = vecs[qs] @ vecs.T  # (b, V)
        scores[np.arange(len(qs)), qs] = -np.inf
        target_scores = scores[np.arange(len(qs)), ts][:, None]
        ranks[lo:lo + batch] = (scores > target_scores).sum(axis=1) + 1
    return {
        f"hr@{k}": float((ranks <= k).mean()),
        "mrr": float((1.0 / ranks).mean()),
        "n": float(len(ranks)),
    }


def booked_rank_metrics(
    ids: Sequence[str],
    vectors: np.ndarray,
    sessions: Any,
    item_market: Mapping[str, str],
    *,
    n_candidates: int = 50,
    seed: int = 0,
) -> dict[str, float]:
    """Rank of the booked item among same-market candidates, by similarity to the clicks.

    Paper sec. 4.1: candidates are what search showed; our sessions carry no impressions, so
    each booked session gets the booked item plus ``n_candidates - 1`` random known items of
    its market. A candidate's score is its mean cosine to the session's other clicks.
    """
    index = {t: i for i, t in enumerate(ids)}
    vecs = _unit(np.asarray(vectors, dtype=np.float32))
    by_market: dict[str, list[int]] = {}
    for t, i in index.items():
        m = item_market.get(t)
        if m is not None:
            by_market.setdefault(m, []).append(i)
    pools = {m: np.array(v) for m, v in by_market.items()}
    rng = np.random.default_rng(seed)
    table = as_sessions_table(sessions)
    if "booked_item" not in table.column_names:
        return {"booked_mean_rank": 0.0, "booked_mrr": 0.0, "n": 0.0}
    ranks: list[int] = []
    for row, booked in zip(table.column("items").to_pylist(),
                           table.column("booked_item").to_pylist(), strict=True):
        b = index.get(booked) if booked is not None else None
        if b is None:
            continue
        context = [index[c] for c in (row or []) if c in index and c != booked]
        pool = pools.get(item_market.get(booked, ""))
        if not context or pool is None or len(pool) < n_candidates:
            continue
        others = pool[pool != b]
        cands = np.concatenate([[b], rng.choice(others, n_candidates - 1, replace=False)])
        profile = vecs[context].mean(axis=0)
        scores = vecs[cands] @ profile
        ranks.append(int((scores[1:] > scores[0]).sum()) + 1)
    if not ranks:
        return {"booked_mean_rank": 0.0, "booked_mrr": 0.0, "n": 0.0}
    r = np.array(ranks, dtype=np.float64)
    return {"booked_mean_rank": float(r.mean()), "booked_mrr": float((1 / r).mean()),
            "n": float(len(r))}


def neighbour_cohesion(
    ids: Sequence[str],
    vectors: np.ndarray,
    attribute: Mapping[str, str | None],
    *,
    k: int = 10,
    max_items: int = 2000,
    within: Mapping[str, str | None] | None = None,
    seed: int = 0,
) -> float:
    """Share of each item's ``k`` nearest neighbours with the same ``attribute`` value.

    With ``within`` (e.g. market), neighbours are searched only among items sharing that value:
    the paper's check that similar listings of one market share type and price.
    """
    vecs = _unit(np.asarray(vectors, dtype=np.float32))
    labels = np.array([attribute.get(t) for t in ids], dtype=object)
    groups = None if within is None else np.array([within.get(t) for t in ids], dtype=object)
    rows = np.flatnonzero(labels != None)  # noqa: E711 (elementwise on object array)
    if len(rows) > max_items:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_items, replace=False))
    shares = []
    for lo in range(0, len(rows), 512):
        chunk = rows[lo:lo + 512]
        scores = vecs[chunk] @ vecs.T
        scores[np.arange(len(chunk)), chunk] = -np.inf
        if groups is not None:
            scores[groups[chunk][:, None] != groups[None, :]] = -np.inf
        for j, r in enumerate(chunk):
            row = scores[j]
            n_ok = int(np.isfinite(row).sum())
            kk = min(k, n_ok)
            if kk == 0:
                continue
            top = np.argpartition(-row, kk - 1)[:kk]
            shares.append(float((labels[top] == labels[r]).mean()))
    return float(np.mean(shares)) if shares else 0.0
