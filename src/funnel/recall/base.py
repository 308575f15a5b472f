"""The candidate-source protocol every recall generator implements.

A source answers one request with candidate item ids and scores; the merger calls every
source, applies quotas, dedupes, and records provenance. Sources know nothing about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class RecallRequest:
    """What a candidate source may look at to answer one request."""

    user_id: str | None = None
    query: str | None = None
    market: str | None = None
    recent_items: Sequence[str] = ()
    """The user's recent clicked items, most recent last (online session state)."""
    earlier_items: Sequence[str] = ()
    """Items the user clicked in earlier sessions (the online state before the session in
    progress), oldest first; empty for an anonymous visitor."""
    filters: dict[str, str] = field(default_factory=dict)
    k: int = 1000


@dataclass(frozen=True)
class Candidates:
    """Item ids and scores from one source, best first."""

    item_ids: np.ndarray  # (n,) object array of str
    scores: np.ndarray  # (n,) float32

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.scores):
            raise ValueError(
                f"item_ids and scores must have the same length; got {len(self.item_ids)} "
                f"and {len(self.scores)}"
            )

    def __len__(self) -> int:
        return len(self.item_ids)

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.empty(0, dtype=object), np.empty(0, dtype=np.float32))


@runtime_checkable
class CandidateSource(Protocol):
    """One recall generator (vector ANN, BM25, co-visitation, popularity, generative, ...)."""

    name: str

    def candidates(self, request: RecallRequest) -> Candidates:
        """Up to ``request.k`` candidates for ``request``, best first."""
        ...
