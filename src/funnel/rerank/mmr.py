"""Maximal Marginal Relevance (Carbonell and Goldstein, SIGIR 1998).

Each step picks ``argmax_i  lambda r_i - (1 - lambda) max_{j in Y} S_ij``: relevance minus the
similarity to the closest item already shown. Keeping the running max per candidate makes a
step O(n D), so ``k`` picks cost O(k n D).
"""

from __future__ import annotations

import numba
import numpy as np

from funnel._checks import validate_params
from funnel.rerank.base import ItemFeatures, Reranker, normalize_relevance, relevance_tail
from funnel.rerank.dpp import _PARAMS as _DPP_PARAMS
from funnel.rerank.dpp import FASTMATH, best_unpicked, lowrank_row


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _mmr(similarity: np.ndarray, factor: np.ndarray, relevance: np.ndarray, lam: float,
         k: int) -> np.ndarray:
    # Similarity rows come from ``similarity`` when it is (n, n), else from ``factor`` B B^T.
    n = relevance.shape[0]
    k = min(k, n)
    dense = similarity.shape[0] == n
    ones = np.ones(n)
    max_sim = np.zeros(n)  # nothing shown yet: no penalty
    score = np.empty(n)
    row = np.empty(n)
    picked = np.zeros(n, dtype=np.bool_)
    selected = np.empty(k, dtype=np.int64)
    for t in range(k):
        for i in range(n):
            score[i] = lam * relevance[i] - (1.0 - lam) * max_sim[i]
        j, _ = best_unpicked(score, picked)
        selected[t] = j
        picked[j] = True
        if dense:
            row[:] = similarity[j]
        else:
            lowrank_row(factor, ones, j, row)
        for i in range(n):
            if not picked[i] and (t == 0 or row[i] > max_sim[i]):
                max_sim[i] = row[i]
    return selected


def mmr_greedy(relevance: np.ndarray, similarity: np.ndarray, k: int, *, lam: float
               ) -> np.ndarray:
    """MMR selection with a dense similarity matrix (n, n); ``lam`` = relevance weight."""
    r = np.ascontiguousarray(relevance, dtype=np.float64)
    S = np.ascontiguousarray(similarity, dtype=np.float64)
    if S.shape != (r.shape[0], r.shape[0]):
        raise ValueError(f"similarity must be (n, n) with n={r.shape[0]}; got {S.shape}")
    if r.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    return _mmr(S, np.empty((0, 0)), r, float(lam), int(k))


def mmr_greedy_lowrank(relevance: np.ndarray, factor: np.ndarray, k: int, *, lam: float
                       ) -> np.ndarray:
    """MMR selection with ``S = B B^T`` given by its factor ``B`` (n, D)."""
    r = np.ascontiguousarray(relevance, dtype=np.float64)
    B = np.ascontiguousarray(factor, dtype=np.float64)
    if B.ndim != 2 or B.shape[0] != r.shape[0]:
        raise ValueError(f"factor must be (n={r.shape[0]}, D); got {B.shape}")
    if r.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    return _mmr(np.empty((0, 0)), B, r, float(lam), int(k))


class MMRReranker(Reranker):
    """Diversity by Maximal Marginal Relevance with ``lambda = 1 - diversity``.

    Relevance is min-max scaled per list and similarity lies in [0, 1] (see
    :mod:`funnel.rerank.similarity`), so both terms share a scale.
    """

    def __init__(self, *, diversity: float = 0.3, similarity: str = "auto",
                 attributes: tuple[str, ...] = ("category", "brand"),
                 embedding_weight: float = 0.5) -> None:
        self.diversity = diversity
        self.similarity = similarity
        self.attributes = attributes
        self.embedding_weight = embedding_weight

    def _validate_params(self) -> None:
        validate_params(vars(self), _DPP_PARAMS)

    def order(self, relevance: np.ndarray, features: ItemFeatures, k: int) -> np.ndarray:
        r = normalize_relevance(relevance)
        n = r.shape[0]
        if float(self.diversity) <= 0.0 or n <= 1:
            return relevance_tail(relevance, np.empty(0, dtype=np.int64))
        from funnel.rerank.similarity import similarity_factor

        B = similarity_factor(features, n, kind=self.similarity, attributes=self.attributes,
                              embedding_weight=self.embedding_weight)
        chosen = mmr_greedy_lowrank(r, B, k, lam=1.0 - float(self.diversity))
        return relevance_tail(relevance, chosen)


class RelevanceReranker(Reranker):
    """The identity step: keep the ranker's order (the baseline of every trade-off curve)."""

    def __init__(self) -> None:
        pass

    def order(self, relevance: np.ndarray, features: ItemFeatures, k: int) -> np.ndarray:
        return relevance_tail(relevance, np.empty(0, dtype=np.int64))
