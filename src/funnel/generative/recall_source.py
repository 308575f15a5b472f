"""``GenerativeRecall``: DreamRec behind the recall stage's candidate-source contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from funnel.exceptions import ArtifactError
from funnel.generative.dreamrec import DreamRec
from funnel.recall.base import Candidates, RecallRequest


class GenerativeRecall:
    """Candidates = real items nearest the embedding generated from the recent items.

    Stateless per request (a fresh seeded generator each call), so one instance can serve
    concurrent requests. A request with no known recent item yields no candidates: without a
    history the generator has nothing personal to add over the popularity source.
    """

    name = "generative"

    def __init__(self, model: DreamRec, item_ids: list[str], *, seed: int = 0) -> None:
        if len(item_ids) != model.item_table_.shape[0]:
            raise ValueError(
                f"item_ids has {len(item_ids)} ids; the model has "
                f"{model.item_table_.shape[0]} item vectors"
            )
        self.model = model
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.row_of = {item: row for row, item in enumerate(item_ids)}
        self.seed = seed

    def candidates(self, request: RecallRequest) -> Candidates:
        history = [self.row_of[i] for i in request.recent_items if i in self.row_of]
        if not history or request.k < 1:
            return Candidates.empty()
        rows, scores = self.model.recommend(
            [history], k=request.k, generator=torch.Generator().manual_seed(self.seed)
        )
        keep = np.isfinite(scores[0])
        return Candidates(self.item_ids[rows[0][keep]], scores[0][keep].astype(np.float32))

    @classmethod
    def load(cls, directory: Path) -> GenerativeRecall:
        """Load ``<artifact>/generative`` as written by ``build_generative``."""
        ids_path = directory / "item_ids.json"
        if not ids_path.is_file():
            raise ArtifactError(f"{ids_path}: missing; run 'funnel build --stages generative'")
        model = DreamRec.load(directory / "model")
        return cls(model, [str(i) for i in json.loads(ids_path.read_text())])
