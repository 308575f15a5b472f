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
from funnel.rerank.dpp import FASTMATH


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _mmr_lowrank(factor: np.ndarray, relevance: np.ndarray, lam: float, k: int) -> np.ndarray:
    n, dim = factor.shape
    k = min(k, n)
    max_sim = np.zeros(n)  # nothing shown yet: no penalty
    picked = np.zeros(n, dtype=np.bool_)
    selected = np.empty(k, dtype=np.int64)
    for t in range(k):
        j = -1
        best = -np.inf
        for i in range(n):
            if picked[i]:
                continue
            score = lam * relevance[i] - (1.0 - lam) * max_sim[i]
            if score > best:
                best = score
                j = i
        selected[t] = j
        picked[j] = True
        fj = factor[j]
        for i in range(n):
            if picked[i]:
                continue
            fi = factor[i]
            dot = 0.0
            for a in range(dim):
                dot += fj[a] * fi[a]
            if t == 0 or dot > max_sim[i]:
                max_sim[i] = dot
    return selected


@numba.njit(cache=True, nogil=True)
def _mmr_dense(sim: np.ndarray, relevance: np.ndarray, lam: float, k: int) -> np.ndarray:
    n = sim.shape[0]
    k = min(k, n)
    max_sim = np.zeros(n)
    picked = np.zeros(n, dtype=np.bool_)
    selected = np.empty(k, dtype=np.int64)
    for t in range(k):
        j = -1
        best = -np.inf
        for i in range(n):
            if picked[i]:
                continue
            score = lam * relevance[i] - (1.0 - lam) * max_sim[i]
            if score > best:
                best = score
                j = i
        selected[t] = j
        picked[j] = True
        for i in range(n):
            if not picked[i] and (t == 0 or sim[j, i] > max_sim[i]):
                max_sim[i] = sim[j, i]
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
    return _mmr_dense(S, r, float(lam), int(k))


def mmr_greedy_lowrank(relevance: np.ndarray, factor: np.ndarray, k: int, *, lam: float
                       ) -> np.ndarray:
    """MMR selection with ``S = B B^T`` given by its factor ``B`` (n, D)."""
    r = np.ascontiguousarray(relevance, dtype=np.float64)
    B = np.ascontiguousarray(factor, dtype=np.float64)
    if B.ndim != 2 or B.shape[0] != r.shape[0]:
        raise ValueError(f"factor must be (n={r.shape[0]}, D); got {B.shape}")
    if r.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    return _mmr_lowrank(B, r, float(lam), int(k))


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
