"""Searches get their own diversity step (``[rerank] search_method``, off by default) and the
evaluation's ``no_rerank`` baseline removes it and the scatter rules (issue 18, item 5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from funnel.engine.core import Engine
from funnel.evaluate.replay import without_rerank
from funnel.features.personalization import RecentActions


def _engine(served_workspace, tmp_path: Path, **rerank: object) -> Engine:
    source = served_workspace.artifacts.require_current()
    copy = tmp_path / "artifact"
    shutil.copytree(source, copy)
    path = copy / "rerank" / "config.json"
    config = json.loads(path.read_text())
    config.update(rerank)
    path.write_text(json.dumps(config))
    return Engine.load(copy)


def _brands(engine: Engine, ids: list[str]) -> list[str]:
    return [str(engine.catalog.columns["brand"][engine.catalog.rows([i])[0]]) for i in ids]


@pytest.mark.slow
def test_search_diversity_and_brand_scatter_apply_to_searches(served_workspace, tmp_path):
    torch.set_num_threads(1)
    plain = Engine.load(served_workspace.artifacts.require_current())
    diverse = _engine(served_workspace, tmp_path / "a", search_method="mmr",
                      search_diversity=0.9)
    scattered = _engine(served_workspace, tmp_path / "b",
                        scatter=[{"attribute": "brand", "max_count": 1, "window": 5}])
    try:
        assert plain.search_rerank.config.method == "none"
        query = str(plain.catalog.markets[0])
        ask = {"query": query, "user_id": None, "market": None, "filters": {}, "k": 10,
               "state": RecentActions()}
        default = _brands(plain, list(plain.run(**ask).item_ids))  # the default brand rule
        assert all(max(map(default[i : i + 5].count, default[i : i + 5])) <= 2
                   for i in range(len(default)))  # at most 2 of a brand in any 5 positions
        base = without_rerank(plain).run(**ask).item_ids  # the ranker's own order
        more = diverse.run(**ask).item_ids
        assert list(more) != list(base)  # the search has a diversity step now
        assert list(without_rerank(diverse).run(**ask).item_ids) == list(base)
        brands = _brands(scattered, list(scattered.run(**ask).item_ids))
        assert all(len(set(brands[i : i + 5])) == len(brands[i : i + 5])
                   for i in range(len(brands)))  # no brand twice in any 5 positions
        assert list(without_rerank(scattered).run(**ask).item_ids) == list(base)
    finally:
        for engine in (plain, diverse, scattered):
            engine.close()
