"""DPP diversity by fast greedy MAP inference (Chen, Zhang, Zhou, NeurIPS 2018, Algorithm 1).

Greedy MAP adds, at each step, the item that most increases ``log det(L_Y)``. Chen et al.
keep an incremental Cholesky factor: item ``i``'s marginal gain is ``d_i^2`` and one step
updates every ``d_i`` with one new Cholesky column, so ``k`` picks from ``n`` cost
O(k^2 n) instead of a fresh determinant per candidate per step.

Relevance/diversity trade-off (paper, Sec. 4 "tradeoff"): the kernel is
``L = Diag(exp(alpha r)) S Diag(exp(alpha r))`` with ``alpha = theta / (2 (1 - theta))``, so
``log det L_Y = (theta / (1 - theta)) sum_Y r + log det S_Y``: theta = 1 is pure relevance,
theta = 0 pure diversity.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np

from funnel._checks import validate_params
from funnel.rerank.base import ItemFeatures, Reranker, normalize_relevance, relevance_tail
from funnel.rerank.similarity import SIMILARITIES, similarity_factor

# reassoc + contract let LLVM vectorize the dot products (3-4x); no inf/nan assumptions.
FASTMATH = {"reassoc", "contract"}


@numba.njit(cache=True, nogil=True)
def best_unpicked(score: np.ndarray, picked: np.ndarray) -> tuple[int, float]:
    """Index and value of the largest ``score`` among items not yet picked (-1 if none)."""
    j = -1
    best = -np.inf
    for i in range(score.shape[0]):
        if not picked[i] and score[i] > best:
            best = score[i]
            j = i
    return j, best


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def lowrank_row(factor: np.ndarray, scale: np.ndarray, j: int, out: np.ndarray) -> None:
    """``out[i] = scale_j scale_i (b_j . b_i)``: row ``j`` of a low-rank kernel, never stored."""
    n, dim = factor.shape
    fj = factor[j]
    for i in range(n):
        fi = factor[i]
        dot = 0.0
        for a in range(dim):
            dot += fj[a] * fi[a]
        out[i] = scale[j] * scale[i] * dot


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _lowrank_diag(factor: np.ndarray, quality: np.ndarray, jitter: float) -> np.ndarray:
    n, dim = factor.shape
    diag = np.empty(n)
    for i in range(n):
        s = 0.0
        for a in range(dim):
            s += factor[i, a] * factor[i, a]
        diag[i] = quality[i] * quality[i] * (s + jitter)
    return diag


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _cholesky_step(cis: np.ndarray, d2: np.ndarray, picked: np.ndarray, row: np.ndarray,
                   j: int, t: int) -> None:
    # Chen et al., Alg. 1 lines 6-8: e_i = (L_ji - <c_j, c_i>) / d_j; c_i += [e_i]; d_i^2 -= e_i^2
    dj = np.sqrt(d2[j])
    cj = cis[j]
    for i in range(d2.shape[0]):
        if picked[i]:
            continue
        ci = cis[i]
        s = 0.0
        for u in range(t):
            s += cj[u] * ci[u]
        e = (row[i] - s) / dj
        ci[t] = e
        d2[i] -= e * e


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _greedy(kernel: np.ndarray, factor: np.ndarray, quality: np.ndarray, diag: np.ndarray,
            k: int, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    # Kernel rows come from ``kernel`` when it is (n, n), else from the low-rank ``factor``.
    n = diag.shape[0]
    k = min(k, n)
    dense = kernel.shape[0] == n
    cis = np.zeros((n, k))  # row i holds item i's Cholesky coefficients c_i
    d2 = diag.copy()
    row = np.empty(n)
    picked = np.zeros(n, dtype=np.bool_)
    selected = np.empty(k, dtype=np.int64)
    gains = np.empty(k)
    t = 0
    while t < k:
        j, best = best_unpicked(d2, picked)
        if j < 0 or best < epsilon:  # numerical stop: no item adds volume any more
            break
        selected[t] = j
        gains[t] = best
        picked[j] = True
        if dense:
            row[:] = kernel[j]
        else:
            lowrank_row(factor, quality, j, row)
        _cholesky_step(cis, d2, picked, row, j, t)
        t += 1
    return selected[:t], gains[:t]


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _greedy_window_lowrank(factor: np.ndarray, quality: np.ndarray, jitter: float, k: int,
                           epsilon: float, window: int) -> tuple[np.ndarray, np.ndarray]:
    # Each pick maximizes log det over itself and the previous (window - 1) picks only.
    # Kernel rows of picked items are cached; each step re-factors the small window
    # (Cholesky, O(w^3)) and forward-solves every candidate (O(n w^2)).
    n = factor.shape[0]
    k = min(k, n)
    diag = _lowrank_diag(factor, quality, jitter)
    rows = np.empty((k, n))
    d2 = diag.copy()
    picked = np.zeros(n, dtype=np.bool_)
    selected = np.empty(k, dtype=np.int64)
    gains = np.empty(k)
    chol = np.zeros((window, window))
    c = np.empty(window)
    t = 0
    while t < k:
        if t > 0:
            w0 = max(0, t - (window - 1))
            m = t - w0
            for a in range(m):  # Cholesky of L[W, W], W = selected[w0:t]
                for b in range(a + 1):
                    s = rows[w0 + a, selected[w0 + b]]
                    for u in range(b):
                        s -= chol[a, u] * chol[b, u]
                    if a == b:
                        chol[a, a] = np.sqrt(max(s, 1e-300))
                    else:
                        chol[a, b] = s / chol[b, b]
            for i in range(n):
                if picked[i]:
                    continue
                acc = 0.0
                for a in range(m):  # forward solve chol c = L[W, i]
                    s = rows[w0 + a, i]
                    for u in range(a):
                        s -= chol[a, u] * c[u]
                    c[a] = s / chol[a, a]
                    acc += c[a] * c[a]
                d2[i] = diag[i] - acc
        j, best = best_unpicked(d2, picked)
        if j < 0 or best < epsilon:
            break
        selected[t] = j
        gains[t] = best
        picked[j] = True
        lowrank_row(factor, quality, j, rows[t])
        rows[t, j] = diag[j]
        t += 1
    return selected[:t], gains[:t]


def dpp_greedy(kernel: np.ndarray, k: int, *, epsilon: float = 1e-10
               ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy MAP of a DPP with PSD ``kernel`` (n, n): Chen et al. 2018, Algorithm 1.

    Returns ``(selected, gains)``: up to ``k`` indices in pick order and each pick's
    marginal gain ``d_j^2``, so ``log det kernel[Y, Y] = sum(log(gains))``. Stops early when
    the best gain falls below ``epsilon`` (the paper's stability criterion).
    """
    L = np.ascontiguousarray(kernel, dtype=np.float64)
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise ValueError(f"kernel must be a square matrix; got shape {L.shape}")
    if L.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    none = np.empty((0, 0))
    return _greedy(L, none, np.empty(0), np.diag(L).copy(), int(k), float(epsilon))


def dpp_greedy_lowrank(factor: np.ndarray, quality: np.ndarray, k: int, *,
                       jitter: float = 0.0, epsilon: float = 1e-10,
                       window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dpp_greedy` for ``L = Diag(q) (B B^T + jitter I) Diag(q)`` without forming L.

    O(k n D + k^2 n) for ``factor`` B of shape (n, D). With ``window`` = w, each pick
    maximizes the determinant over itself and the previous w - 1 picks only (the sliding
    window variant of Chen et al., Sec. 5): long lists need diversity only among items seen
    together; O(k n (D + w^2)). ``window=None`` or ``window >= k`` is the plain greedy.
    """
    B = np.ascontiguousarray(factor, dtype=np.float64)
    q = np.ascontiguousarray(quality, dtype=np.float64)
    if B.ndim != 2 or q.shape != (B.shape[0],):
        raise ValueError(
            f"factor must be (n, D) and quality (n,); got {B.shape} and {q.shape}"
        )
    if B.shape[0] == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    if window is not None and window < min(k, B.shape[0]):
        if window < 1:
            raise ValueError(f"The 'window' parameter must be an int >= 1. Got {window!r}.")
        return _greedy_window_lowrank(B, q, float(jitter), int(k), float(epsilon), int(window))
    return _greedy(np.empty((0, 0)), B, q, _lowrank_diag(B, q, float(jitter)), int(k),
                   float(epsilon))


def dpp_greedy_naive(kernel: np.ndarray, k: int, *, epsilon: float = 1e-10) -> np.ndarray:
    """The textbook greedy: a fresh log-determinant for every candidate at every step.

    Each step batches one slogdet per remaining candidate; O(n t^3) at step t, so about
    O(n k^4) in all (no reuse between steps). The oracle for :func:`dpp_greedy` and the
    baseline of ``benchmarks/rerank.py``.
    """
    L = np.asarray(kernel, dtype=np.float64)
    n = L.shape[0]
    selected: list[int] = []
    current = 0.0
    for _ in range(min(k, n)):
        rest = np.array([i for i in range(n) if i not in set(selected)], dtype=np.int64)
        idx = np.concatenate(
            [np.tile(np.array(selected, dtype=np.int64), (rest.size, 1)), rest[:, None]], axis=1
        )  # (m, t+1): each row is Y + {i}
        subs = L[idx[:, :, None], idx[:, None, :]]  # (m, t+1, t+1)
        sign, logdet = np.linalg.slogdet(subs)
        logdet = np.where(sign > 0, logdet, -np.inf)
        best = int(np.argmax(logdet))
        if not np.isfinite(logdet[best]) or np.exp(logdet[best] - current) < epsilon:
            break
        current = float(logdet[best])
        selected.append(int(rest[best]))
    return np.array(selected, dtype=np.int64)


def dpp_map_bruteforce(kernel: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exact MAP over all subsets of size ``k`` (tiny inputs only): ``(subset, log det)``."""
    L = np.asarray(kernel, dtype=np.float64)
    best: tuple[int, ...] = ()
    best_val = -np.inf
    for subset in itertools.combinations(range(L.shape[0]), k):
        sign, val = np.linalg.slogdet(L[np.ix_(subset, subset)])
        if sign > 0 and val > best_val:
            best, best_val = subset, float(val)
    return np.array(best, dtype=np.int64), best_val


def tradeoff_alpha(theta: float) -> float:
    """``alpha = theta / (2 (1 - theta))`` of Chen et al.; ``inf`` at theta = 1."""
    return np.inf if theta >= 1.0 else theta / (2.0 * (1.0 - theta))


class DPPReranker(Reranker):
    """Diversity by DPP greedy MAP (Chen, Zhang, Zhou 2018) over ``Diag(q) S Diag(q)``.

    ``diversity`` in [0, 1] is ``1 - theta`` of the paper: 0 keeps the ranker's order, larger
    values trade relevance for a larger ``det S_Y``. Relevance is min-max scaled per list.
    ``jitter`` is added to diag(S) so low-rank similarities (d-dim embeddings, few attribute
    values) keep the kernel non-singular; once no item adds volume above ``epsilon`` the rest
    of the list follows in relevance order. ``window`` (optional) asks for diversity only
    among any ``window`` consecutive items (Chen et al.'s sliding window).
    """

    def __init__(self, *, diversity: float = 0.3, similarity: str = "auto",
                 attributes: tuple[str, ...] = ("category", "brand"),
                 embedding_weight: float = 0.5, jitter: float = 1e-3,
                 epsilon: float = 1e-10, window: int | None = None) -> None:
        self.diversity = diversity
        self.similarity = similarity
        self.attributes = attributes
        self.embedding_weight = embedding_weight
        self.jitter = jitter
        self.epsilon = epsilon
        self.window = window

    def _validate_params(self) -> None:
        validate_params(vars(self), _PARAMS)

    def order(self, relevance: np.ndarray, features: ItemFeatures, k: int) -> np.ndarray:
        r = normalize_relevance(relevance)
        n = r.shape[0]
        theta = 1.0 - float(self.diversity)
        if theta >= 1.0 or n <= 1:
            return relevance_tail(relevance, np.empty(0, dtype=np.int64))
        B = similarity_factor(features, n, kind=self.similarity, attributes=self.attributes,
                              embedding_weight=self.embedding_weight)
        # exp(alpha r) with r in [0, 1]; shift so the best item has quality 1 (no overflow).
        q = np.exp(tradeoff_alpha(theta) * (r - 1.0))
        chosen, _ = dpp_greedy_lowrank(B, q, k, jitter=float(self.jitter),
                                       epsilon=float(self.epsilon), window=self.window)
        return relevance_tail(relevance, chosen)


def _weight(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0


_PARAMS = {
    "diversity": (_weight, "a float in [0, 1]"),
    "similarity": (lambda v: v in SIMILARITIES, f"one of {list(SIMILARITIES)}"),
    "attributes": (lambda v: isinstance(v, tuple | list) and all(isinstance(a, str) for a in v),
                   "a tuple of attribute names"),
    "embedding_weight": (_weight, "a float in [0, 1]"),
    "jitter": (lambda v: isinstance(v, int | float) and 0.0 <= v < 1.0, "a float in [0, 1)"),
    "epsilon": (lambda v: isinstance(v, int | float) and v > 0.0, "a float > 0"),
    "window": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)
                                       and v >= 1), "None or an int >= 1"),
}
