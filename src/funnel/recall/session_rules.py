"""Session-based next-item recommenders: last-item co-occurrence, SR and V-SKNN.

The simple, strong baselines of Ludewig & Jannach (2018), "Evaluation of session-based
recommendation algorithms", User Modeling and User-Adapted Interaction 28(4-5): 331-390.
Each is an estimator (``fit(sessions, times=...)`` then ``recommend(prefix, k, exclude=...)``)
and a recall source (``candidates(request)`` from the user's recent items), saved as
``config.json`` + ``arrays.npz`` without pickle.

Scores are computed as exact integer sums (SR's ``1 / gap`` weights are scaled by
lcm(1..steps), V-SKNN's position weights by the prefix length), so equal scores are equal
floats and ties always break by ascending item id.

Example
-------
>>> log = [["a", "b", "c"], ["a", "c"], ["b", "c", "d"]]
>>> SequentialRules().fit(log).recommend(["b"], 2)
(['c', 'd'], [2.0, 0.5])
>>> LastItemCooccurrence().fit(log).recommend(["a"], 5)
(['c', 'b'], [2.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from funnel._checks import positive_int, validate_params
from funnel.recall._session_base import (
    SessionRecommender,
    check_sessions,
    encode,
    exact_scale,
)

_BOOL = (lambda v: isinstance(v, bool), "a bool")
_POSITIVE = (positive_int, "a positive int")


def _binary(codes: np.ndarray, offsets: np.ndarray, n_items: int) -> sp.csr_matrix:
    """(sessions, items) 0/1 matrix: which items each session holds (repeats once)."""
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    m = sp.csr_matrix(
        (np.ones(len(codes), dtype=np.float64), (rows, codes)),
        shape=(len(offsets) - 1, n_items),
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


class LastItemCooccurrence(SessionRecommender):
    """Items that share a training session with the prefix's last item, by session count.

    The co-occurrence baseline of Ludewig & Jannach (2018): ``score(j) = #sessions holding
    both last(prefix) and j`` (symmetric, each session counted once per pair, ``j != last``).

    Parameters
    ----------
    exclude_recent : bool
        As a recall source, leave the request's recent items out of the candidates.
    """

    name = "cooc"
    _arrays = ("items_", "cooc_")
    _sparse = ("cooc_",)

    def __init__(self, *, exclude_recent: bool = True) -> None:
        self.exclude_recent = exclude_recent

    def fit(
        self, sessions: Sequence[Sequence[str]], *, times: Sequence[float] | None = None
    ) -> LastItemCooccurrence:
        """Count item pairs per session (``times`` is accepted for a shared API and unused)."""
        validate_params(self.get_params(), {"exclude_recent": _BOOL})
        clean, _ = check_sessions(sessions, times)
        items, codes, offsets = encode(clean)
        b = _binary(codes, offsets, len(items))
        cooc = (b.T @ b).tocsr()  # (items, items): sessions holding both
        cooc.setdiag(0.0)
        cooc.eliminate_zeros()
        cooc.sort_indices()
        self.items_, self.cooc_ = items, cooc
        return self

    def _scores(self, codes: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
        m, last = self.cooc_, codes[-1]
        a, b = m.indptr[last], m.indptr[last + 1]
        return m.indices[a:b].astype(np.int64), m.data[a:b], 1.0


class SequentialRules(SessionRecommender):
    """SR, sequential rules (Ludewig & Jannach 2018, section 3.1).

    For every training session and positions ``p < q <= p + steps``, the rule
    ``s[p] -> s[q]`` gains ``1 / (q - p)``; a prefix scores the rules of its last item
    (a repeated item makes a rule to itself, as in the paper's definition).

    Parameters
    ----------
    steps : int
        Largest gap between the two items of a rule.
    exclude_recent : bool
        As a recall source, leave the request's recent items out of the candidates.
    """

    name = "sr"
    _arrays = ("items_", "rules_")
    _sparse = ("rules_",)

    def __init__(self, *, steps: int = 10, exclude_recent: bool = True) -> None:
        self.steps = steps
        self.exclude_recent = exclude_recent

    def fit(
        self, sessions: Sequence[Sequence[str]], *, times: Sequence[float] | None = None
    ) -> SequentialRules:
        """Sum the rule weights (``times`` is accepted for a shared API and unused)."""
        validate_params(self.get_params(), {"steps": _POSITIVE, "exclude_recent": _BOOL})
        clean, _ = check_sessions(sessions, times)
        items, codes, offsets = encode(clean)
        scale = exact_scale(self.steps)
        ends = np.repeat(offsets[1:], np.diff(offsets))  # (clicks,) end of each click's session
        at = np.arange(len(codes))
        rows, cols, weights = [], [], []
        for gap in range(1, self.steps + 1):
            p = at[at + gap < ends]
            if not len(p):
                break
            rows.append(codes[p])
            cols.append(codes[p + gap])
            weights.append(np.full(len(p), scale / gap))
        n = len(items)
        if rows:
            rules = sp.csr_matrix(
                (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
                shape=(n, n),
            )
            rules.sum_duplicates()
            rules.sort_indices()
        else:
            rules = sp.csr_matrix((n, n), dtype=np.float64)
        self.items_, self.rules_ = items, rules
        return self

    def _scores(self, codes: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
        m, last = self.rules_, codes[-1]
        a, b = m.indptr[last], m.indptr[last + 1]
        return m.indices[a:b].astype(np.int64), m.data[a:b], exact_scale(self.steps)


class SessionKNN(SessionRecommender):
    """V-SKNN, vector-multiplication session kNN (Ludewig & Jannach 2018, section 3.2).

    Neighbour candidates are the ``sample_size`` most recent training sessions (by ``times``,
    else by order given; ties by order) sharing an item with the prefix. The prefix is a
    real-valued vector with linear position decay: the item at 1-based position ``p`` of a
    prefix of ``l`` known items weighs ``p / l`` (the last item 1; a repeated item keeps its
    last position), the neighbour a binary vector, and similarity is their dot product. The
    ``k`` most similar (ties: more recent first) vote for their items:
    ``score(j) = sum of the similarities of the kept neighbours holding j``.

    Parameters
    ----------
    k : int
        Neighbour sessions kept.
    sample_size : int
        Most recent sessions considered as neighbours.
    exclude_recent : bool
        As a recall source, leave the request's recent items out of the candidates.
    """

    name = "sknn"
    _arrays = ("items_", "session_items_", "item_sessions_")
    _sparse = ("session_items_", "item_sessions_")

    def __init__(
        self, *, k: int = 100, sample_size: int = 500, exclude_recent: bool = True
    ) -> None:
        self.k = k
        self.sample_size = sample_size
        self.exclude_recent = exclude_recent

    def fit(
        self, sessions: Sequence[Sequence[str]], *, times: Sequence[float] | None = None
    ) -> SessionKNN:
        """Index sessions (rows numbered oldest first) and their inverse, item -> sessions."""
        validate_params(self.get_params(), {
            "k": _POSITIVE, "sample_size": _POSITIVE, "exclude_recent": _BOOL,
        })
        clean, t = check_sessions(sessions, times)
        if t is not None:  # rows in recency order: a higher row is a more recent session
            clean = [clean[i] for i in np.argsort(t, kind="stable").tolist()]
        items, codes, offsets = encode(clean)
        b = _binary(codes, offsets, len(items))
        inv = b.T.tocsr()  # (items, sessions), each row's sessions ascending = oldest first
        inv.sort_indices()
        self.items_, self.session_items_, self.item_sessions_ = items, b, inv
        return self

    def _scores(self, codes: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
        weight = {c: p for p, c in enumerate(codes, start=1)}  # later positions overwrite
        known = np.fromiter(weight, dtype=np.int64, count=len(weight))
        inv, b = self.item_sessions_, self.session_items_
        # the union's most recent sample_size sessions lie among each item's sample_size
        posted = []
        for c in known.tolist():
            first, end = inv.indptr[c], inv.indptr[c + 1]
            posted.append(inv.indices[max(first, end - self.sample_size) : end])
        cands = np.unique(np.concatenate(posted))[-self.sample_size :]  # (n_cands,) rows
        # the candidates' items, flattened: (n,) item codes and the candidate each belongs to
        starts, lens = b.indptr[cands], np.diff(b.indptr)[cands]
        owner = np.repeat(np.arange(len(cands)), lens)
        shift = starts - (np.cumsum(lens) - lens)  # flat position -> position in b.indices
        flat = b.indices[np.repeat(shift, lens) + np.arange(lens.sum())]
        order = np.argsort(known)
        sk, sw = known[order], np.fromiter(weight.values(), np.int64, len(weight))[order]
        at = np.minimum(np.searchsorted(sk, flat), len(sk) - 1)
        w = np.where(sk[at] == flat, sw[at], 0)
        sims = np.bincount(owner, weights=w, minlength=len(cands))  # exact: integer sums
        keep = np.lexsort((-cands, -sims))[: self.k]
        mask = np.zeros(len(cands), dtype=bool)
        mask[keep] = True
        sel = mask[owner]
        uniq, inverse = np.unique(flat[sel], return_inverse=True)
        scores = np.bincount(inverse, weights=sims[owner[sel]], minlength=len(uniq))
        return uniq.astype(np.int64), scores, float(len(codes))


ITEM_SESSIONS_SQL = """
SELECT se.session_id, list(e.item_id ORDER BY se.seq) AS items, epoch(max(e.ts)) AS end_t
FROM session_events se JOIN events e ON e.event_id = se.event_id
WHERE e.event_type IN ('click', 'add_to_cart', 'booking') AND e.item_id IS NOT NULL
GROUP BY se.session_id
ORDER BY end_t, se.session_id
"""


def read_item_sessions(con: Any) -> tuple[list[list[str]], list[float]]:
    """Every session's items (clicks, carts, bookings, in order) and end time (epoch seconds),
    oldest first, from a store's ``session_events`` and ``events`` (a DuckDB connection)."""
    rows = con.sql(ITEM_SESSIONS_SQL).fetchall()
    return [list(r[1]) for r in rows], [float(r[2]) for r in rows]


__all__ = [
    "ITEM_SESSIONS_SQL", "LastItemCooccurrence", "SequentialRules", "SessionKNN",
    "read_item_sessions",
]
