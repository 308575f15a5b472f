"""The re-ranker contract: a whole-list reordering of a ranker's output.

A ranker scores candidates one by one; a re-ranker shapes the list as a whole (diversity,
scatter, slots). Every re-ranker answers ``rerank(item_ids, scores, *, k, features)`` with
``(ids, scores)``, best first (STYLE P3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ItemFeatures:
    """What a re-ranker may know about the candidates, rows aligned with ``item_ids``.

    ``vectors`` are item embeddings (any scale; rows are L2-normalized before use) and
    ``attributes`` maps an attribute name (``brand``, ``seller``, ``category``, ``price_band``)
    to one value per candidate (``None`` when unknown).
    """

    vectors: np.ndarray | None = None  # (n, d)
    attributes: Mapping[str, Sequence[str | None]] = field(default_factory=dict)

    def check(self, n: int) -> None:
        """Raise ``ValueError`` unless every field has exactly ``n`` rows."""
        if self.vectors is not None:
            v = np.asarray(self.vectors)
            if v.ndim != 2 or v.shape[0] != n:
                raise ValueError(
                    f"features.vectors must have shape (n_candidates={n}, d); got {v.shape}"
                )
            if not np.all(np.isfinite(v)):
                raise ValueError("features.vectors must be finite; got NaN or inf values")
        for name, values in self.attributes.items():
            if len(values) != n:
                raise ValueError(
                    f"features.attributes[{name!r}] must have one value per candidate "
                    f"({n}); got {len(values)}"
                )

    def take(self, rows: Sequence[int] | np.ndarray) -> ItemFeatures:
        """The features of ``rows`` only, in that order."""
        idx = np.asarray(rows, dtype=np.int64)
        vectors = None if self.vectors is None else np.asarray(self.vectors)[idx]
        attrs = {k: _object_array(v)[idx].tolist() for k, v in self.attributes.items()}
        return ItemFeatures(vectors=vectors, attributes=attrs)


def _object_array(values: Sequence[str | None]) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    out = np.empty(len(values), dtype=object)  # never a 2-D array, whatever the values
    out[:] = list(values)
    return out


def n_rows(f: ItemFeatures) -> int:
    """Rows in ``f`` (0 when it holds nothing)."""
    if f.vectors is not None:
        return int(np.asarray(f.vectors).shape[0])
    for values in f.attributes.values():
        return len(values)
    return 0


def check_list(item_ids: Any, scores: Any, k: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate one candidate list; returns ``(ids, scores as float64, k)``."""
    ids = np.asarray(item_ids, dtype=object)
    if ids.ndim != 1:
        raise ValueError(f"item_ids must be 1-D; got shape {ids.shape}")
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] != ids.shape[0]:
        raise ValueError(
            f"scores must be 1-D with one score per item ({ids.shape[0]}); got shape {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite; got NaN or inf values")
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise ValueError(f"The 'k' parameter must be an int >= 1. Got {k!r} instead.")
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("item_ids must be unique within one list; got duplicates")
    return ids, s, int(k)


def normalize_relevance(scores: np.ndarray) -> np.ndarray:
    """Min-max scale scores to [0, 1] within the list.

    The diversity knob then means the same thing whatever the ranker's score scale (logits,
    probabilities, LambdaMART margins). A constant list maps to all zeros.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.copy()
    lo, hi = float(s.min()), float(s.max())
    if hi - lo <= 0.0:
        return np.zeros_like(s)
    return (s - lo) / (hi - lo)


class Reranker(ABC):
    """Reorder one ranked candidate list into the ``k`` items to show.

    Subclasses take keyword hyperparameters only (stored unchanged, STYLE P1) and implement
    :meth:`order`. Diversity re-rankers are fit-free: :meth:`fit` only validates the
    hyperparameters and returns ``self``.

    Parameters (of :meth:`rerank`)
    ------------------------------
    item_ids : sequence of str, shape (n,)
        Candidate ids, unique.
    scores : array-like of float, shape (n,)
        The ranker's scores (any scale; higher is better).
    k : int
        How many items to return; clamped to ``n``.
    features : ItemFeatures, optional
        Embeddings and/or attributes aligned with ``item_ids``, needed by diversity methods.

    Returns
    -------
    (ids, scores) : tuple of ndarray, shape (min(k, n),)
        The chosen ids in display order and their original scores.

    Raises
    ------
    ValueError
        On mismatched lengths, non-finite scores, duplicate ids, ``k < 1`` or bad
        hyperparameters.

    Example
    -------
    >>> from funnel.rerank import MMRReranker, ItemFeatures
    >>> import numpy as np
    >>> f = ItemFeatures(attributes={"brand": ["a", "a", "b"]})
    >>> ids, _ = MMRReranker(diversity=0.7, similarity="attributes", attributes=("brand",)).rerank(
    ...     ["x", "y", "z"], [1.0, 0.9, 0.5], k=2, features=f)
    >>> list(ids)
    ['x', 'z']
    """

    def fit(self, features: ItemFeatures | None = None) -> Reranker:
        """Validate hyperparameters; returns ``self`` (the diversity methods learn nothing)."""
        self._validate_params()
        return self

    def _validate_params(self) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` naming any bad hyperparameter."""

    @abstractmethod
    def order(self, relevance: np.ndarray, features: ItemFeatures, k: int) -> np.ndarray:
        """A permutation of ``range(n)``: the first ``min(k, n)`` are the selection in display
        order, the rest follow in decreasing relevance (spare items for later steps)."""

    def rerank(
        self,
        item_ids: Sequence[str] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        *,
        k: int,
        features: ItemFeatures | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        ids, s, k, feats = self._checked(item_ids, scores, k, features)
        if len(ids) == 0:
            return ids, s
        perm = self.order(s, feats, k)[: min(k, len(ids))]
        return ids[perm], s[perm]

    def _checked(
        self, item_ids: Sequence[str] | np.ndarray, scores: Sequence[float] | np.ndarray,
        k: int, features: ItemFeatures | None,
    ) -> tuple[np.ndarray, np.ndarray, int, ItemFeatures]:
        """The list, ``k`` and the features checked against each other and the
        hyperparameters: what every ``rerank`` does before ordering."""
        ids, s, k = check_list(item_ids, scores, k)
        self._validate_params()
        feats = features if features is not None else ItemFeatures()
        feats.check(len(ids))
        return ids, s, k, feats

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored (for config round-trips)."""
        return dict(vars(self))


def relevance_tail(relevance: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``chosen`` followed by every other index in decreasing relevance (stable)."""
    mask = np.ones(relevance.shape[0], dtype=bool)
    mask[chosen] = False
    rest = np.flatnonzero(mask)
    rest = rest[np.argsort(-relevance[rest], kind="stable")]
    return np.concatenate([chosen.astype(np.int64), rest.astype(np.int64)])
