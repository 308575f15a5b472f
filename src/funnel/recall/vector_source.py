"""Vector recall: items nearest to the user's recent clicks in the embedding space.

The query vector is the recency-weighted mean of the recent items' embeddings (read from the
embedding artifact through :mod:`funnel.vectors`, never from the embeddings stage itself); the
ANN search is filtered to the request's market by the index's per-market partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.vector_index import ExactIndex, VectorIndex
from funnel.vectors import VectorTable


@dataclass
class VectorSource:
    """CandidateSource over a fitted :class:`VectorIndex` and the item vectors it indexes."""

    index: VectorIndex | ExactIndex
    vectors: VectorTable
    recent_decay: float = 0.7
    max_recent: int = 5
    name: str = "vector"

    def __post_init__(self) -> None:
        self._row = self.vectors.index()

    def query_vector(self, recent_items: list[str]) -> np.ndarray | None:
        """Recency-weighted mean of the known recent items' vectors (None if none is known)."""
        recent = [i for i in recent_items[-self.max_recent :] if i in self._row]
        if not recent:
            return None
        weights = self.recent_decay ** np.arange(len(recent))[::-1]  # most recent weighs 1
        rows = [self._row[i] for i in recent]
        vec = (weights[:, None] * self.vectors.vectors[rows]).sum(axis=0)
        norm = float(np.linalg.norm(vec))
        return (vec / norm).astype(np.float32) if norm > 0 else None

    def candidates(self, request: RecallRequest) -> Candidates:
        vec = self.query_vector(list(request.recent_items))
        if vec is None:
            return Candidates.empty()
        known = self.index.attr_vocab_
        # filters on attributes the index does not carry are other stages' business
        filters = {k: v for k, v in request.filters.items() if k in known}
        if request.market is not None and "market" in known:
            filters["market"] = request.market
        exclude = set(request.recent_items)
        res = self.index.search(vec, k=min(request.k + len(exclude), max(len(self.index), 1)),
                                filters=filters)
        keep = np.array([i not in exclude for i in res.ids.tolist()], dtype=bool)
        ids, scores = res.ids[keep][: request.k], res.scores[keep][: request.k]
        return Candidates(ids, scores.astype(np.float32))
