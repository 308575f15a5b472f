"""The rank stage as the server calls it: candidate ids + request context -> scores + features.

Serving features come from the same functions as training features (``funnel.features``):
item and user counters from the snapshot written with the model, personalization features from
the live session state through :func:`funnel.features.personalization.personalization_features`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from funnel.features.personalization import RecentActions
from funnel.vectors import VectorTable


class RankStage(Protocol):
    recall_sources: tuple[str, ...]
    """Recall sources whose ranks the stage reads (``rec_*`` columns); empty for none."""
    state_scope: str
    """"user": the stage reads the user's whole online state; "session": only the session in
    progress (what its training rows replayed)."""

    def score(
        self,
        item_ids: list[str],
        *,
        query: str,
        market: str | None,
        state: RecentActions,
        user_id: str | None = None,
        rows: np.ndarray | None = None,
        recall: Mapping[str, np.ndarray] | None = None,
        now_ms: int | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(pCTR per candidate, the raw feature columns used), rows aligned with ``item_ids``;
        ``rows`` are the candidates' rows in the stage's own item snapshot, if known;
        ``recall`` the candidates' ``rec_*`` columns when the stage reads recall's ranks;
        ``now_ms`` the request's time (point-in-time session features)."""
        ...

    def rows(self, item_ids: list[str]) -> np.ndarray:
        """Row of each id in the stage's item snapshot (-1 if absent)."""
        ...


def load_rank_stage(artifact_dir: Path, vectors: VectorTable | None) -> RankStage | None:
    """The artifact's rank stage, or None when it was built without one or its build chose
    recall's fused order over the ranker's (``serving.json``'s ``order``, a click-trained
    ranker that lost on held-out lists): the engine then serves the fused order."""
    serving = artifact_dir / "rank" / "serving.json"
    if not (artifact_dir / "rank").exists() or (
        serving.exists() and json.loads(serving.read_text()).get("order") == "fused"
    ):
        return None
    from funnel.rank.serving import load_serving_ranker

    stage: Any = load_serving_ranker(artifact_dir)
    return stage  # type: ignore[no-any-return]
