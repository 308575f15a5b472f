"""Top-k ranking with exclusion, and Recall@k / NDCG@k as the DiffRec code computes them.

Recall@k divides the hits by the number of held-out items (not by ``min(k, n)``); NDCG@k uses
binary gains with the ideal DCG over ``min(k, n)`` positions. Users without held-out items are
left out of the mean.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def top_k(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> np.ndarray:
    """Indices (U, k) of each row's ``k`` best items, best first, skipping ``exclude``'s items."""
    if k < 1:
        raise ValueError(f"The 'k' parameter must be >= 1. Got {k!r} instead.")
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(
                f"exclude has shape {exclude.shape}; expected the scores' shape {scores.shape}"
            )
        coo = exclude.tocoo()
        scores[coo.row, coo.col] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (U, k) unordered
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recall_ndcg(ranked: np.ndarray, truth: sp.csr_matrix, k: int) -> tuple[float, float]:
    """Mean Recall@k and NDCG@k of ``ranked`` (U, >=k) against binary ``truth`` (U, I)."""
    ranked = ranked[:, :k]
    truth = truth.tocsr()
    n_true = np.diff(truth.indptr)
    rows = np.flatnonzero(n_true > 0)
    if len(rows) == 0:
        return 0.0, 0.0
    hits = np.asarray(truth[rows[:, None], ranked[rows]].todense()) > 0  # (R, k)
    recall = hits.sum(axis=1) / n_true[rows]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_true[rows], k) - 1]
    return float(recall.mean()), float((dcg / ideal).mean())


def evaluate_scores(
    scores: np.ndarray, truth: sp.csr_matrix, exclude: sp.csr_matrix, k: int = 20
) -> tuple[float, float]:
    """Recall@k and NDCG@k of dense scores, excluding the items each user already has."""
    return recall_ndcg(top_k(scores, k, exclude), truth, k)
