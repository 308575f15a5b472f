"""Per-list metrics of one shown list against the items a user actually chose.

NDCG uses :func:`funnel.rerank.metrics.ndcg_at_k` with binary gains (1 for each target item,
the ideal list holds every target), so a single target at rank r (0-based) scores
``1 / log2(r + 2)``. Reciprocal rank is that of the first target within the top k (0 if none).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np

from funnel.rerank.metrics import ndcg_at_k


def list_metrics(shown: Sequence[str], targets: Collection[str], k: int = 10
                 ) -> tuple[float, float, float]:
    """(NDCG@k, reciprocal rank@k, hit@k) of ``shown`` for the relevant ``targets``."""
    if k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if not targets:
        raise ValueError("targets: expected at least one relevant item, got none")
    top = list(shown)[:k]
    gains = [1.0 if item in targets else 0.0 for item in top]
    ndcg = ndcg_at_k(gains, [1.0] * len(set(targets)), k) if top else 0.0
    first = next((r for r, g in enumerate(gains) if g > 0), None)
    rr = 0.0 if first is None else 1.0 / (first + 1)
    return float(ndcg), rr, float(first is not None)


def mean_ci(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(mean, half-width of the normal 95% interval); NaN for no values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    half = 1.96 * float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else float("nan")
    return float(v.mean()), half


def catalog_coverage(lists: Sequence[Sequence[str]], n_items: int) -> float:
    """Share of the ``n_items`` catalog shown in at least one list (aggregate diversity)."""
    if n_items < 1:
        raise ValueError(f"n_items: expected an int >= 1, got {n_items!r}")
    return len({i for lst in lists for i in lst}) / n_items


def clustered_mean_ci(values: Sequence[float] | np.ndarray, clusters: Sequence[str]
                      ) -> tuple[float, float]:
    """(mean, half-width of the 95% interval) when cases share a cluster (a user).

    Held-out requests of one user are not independent draws (the same taste, the same history
    feeding the personalization features), so the standard error is the cluster-robust one:
    ``se^2 = G / (G - 1) * sum_g (sum_{i in g} (v_i - mean))^2 / n^2`` over the G clusters.
    With one case per cluster it equals the plain interval's ``std / sqrt(n)`` up to the
    ``ddof`` factor; NaN for no values or a single cluster.
    """
    v = np.asarray(values, dtype=np.float64)
    if len(clusters) != v.size:
        raise ValueError(f"clusters: expected {v.size} labels (one per value), got {len(clusters)}")
    if v.size == 0:
        return float("nan"), float("nan")
    mean = float(v.mean())
    _, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=v - mean)
    g = sums.size
    if g < 2:
        return mean, float("nan")
    se = math.sqrt(g / (g - 1) * float(np.sum(sums**2))) / v.size
    return mean, 1.96 * se
