"""List-level metrics: how diverse a shown list is, and how much relevance it kept.

- intra-list distance: mean pairwise cosine distance ``1 - cos`` of the items' embeddings;
- coverage: distinct values of an attribute shown, over the most the list could show
  (``min(len(list), distinct values in the candidate pool)``), so 1.0 is the best possible;
- entropy: Shannon entropy (bits) of an attribute's value distribution in the list;
- NDCG@k: DCG (linear gains, ``1/log2(i + 2)`` discounts) of the list over the ideal DCG of
  the best ``k`` gains of the pool.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def intra_list_distance(vectors: np.ndarray) -> float:
    """Mean of ``1 - cos(v_i, v_j)`` over pairs ``i < j``; 0.0 for fewer than two items."""
    v = np.asarray(vectors, dtype=np.float64)
    n = v.shape[0]
    if n < 2:
        return 0.0
    u = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    cos = u @ u.T  # (n, n)
    return float((n * (n - 1) - (cos.sum() - np.trace(cos))) / (n * (n - 1)))


def coverage(values: Sequence[str | None], pool: Sequence[str | None] | None = None) -> float:
    """Distinct non-null values shown over the most a list this long could show."""
    shown = {v for v in values if v is not None}
    if not values:
        return 0.0
    available = {v for v in (pool if pool is not None else values) if v is not None}
    best = min(len(values), len(available))
    return 1.0 if best == 0 else len(shown) / best


def entropy(values: Sequence[str | None]) -> float:
    """Shannon entropy in bits of the non-null values (e.g. brand entropy of a list)."""
    counts = np.array(list(Counter(v for v in values if v is not None).values()), dtype=float)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def ndcg_at_k(gains_shown: Sequence[float] | np.ndarray, gains_pool: Sequence[float] | np.ndarray,
              k: int) -> float:
    """NDCG@k of a list with gains ``gains_shown`` (display order) against the pool's best."""
    g = np.asarray(gains_shown, dtype=np.float64)[:k]
    ideal = np.sort(np.asarray(gains_pool, dtype=np.float64))[::-1][:k]
    if np.any(g < 0) or np.any(ideal < 0):
        raise ValueError("ndcg_at_k: gains must be >= 0; shift or rescale scores first")
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = float((ideal * disc[: ideal.size]).sum())
    return 0.0 if idcg <= 0 else float((g * disc[: g.size]).sum()) / idcg
