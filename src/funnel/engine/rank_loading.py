"""The rank stage as the server calls it: candidate ids + request context -> scores + features.

Serving features come from the same functions as training features (``funnel.features``):
item and user counters from the snapshot written with the model, personalization features from
the live session state through :func:`funnel.features.personalization.personalization_features`.
"""

from __future__ import annotations

import json
from pathlib import Path

from funnel.engine import RankStage
from funnel.vectors import VectorTable


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

    stage: RankStage = load_serving_ranker(artifact_dir)  # checked against RankStage at load
    return stage
