"""A returning user's state spans sessions: recall and the browse feed's exclusions read only
the session in progress, the ranker the state its training rows replayed (issue 18, Taobao)."""

from __future__ import annotations

import pytest
import torch

from funnel.engine.core import Engine
from funnel.features.personalization import RecentActions, observe

MIN = 60_000


@pytest.fixture(scope="module")
def engine(served_workspace):
    torch.set_num_threads(1)
    eng = Engine.load(served_workspace.artifacts.require_current())
    yield eng
    eng.close()


def _spy(engine: Engine, monkeypatch) -> dict[str, object]:
    seen: dict[str, object] = {}
    merger, rank = engine.recall.merger, engine.rank
    recall, score = merger.recall, rank.score

    def recall_spy(request):
        seen["recent_items"] = request.recent_items
        return recall(request)

    def score_spy(ids, **kwargs):
        seen["rank_clicks"] = kwargs["state"].clicks
        return score(ids, **kwargs)

    monkeypatch.setattr(merger, "recall", recall_spy)
    monkeypatch.setattr(rank, "score", score_spy)
    return seen


@pytest.mark.parametrize("scope", ["user", "session"])
def test_recall_reads_the_session_in_progress_and_the_ranker_its_scope(engine, monkeypatch,
                                                                      scope) -> None:
    ids = engine.catalog.ids[:6].tolist()
    state = RecentActions(max_len=50)
    for j, item in enumerate(ids[:4]):  # yesterday's session
        state = observe(state, "click", item, ts_ms=j * MIN)
    for j, item in enumerate(ids[4:]):  # today's, in progress
        state = observe(state, "click", item, ts_ms=24 * 60 * MIN + j * MIN)
    now = 24 * 60 * MIN + 3 * MIN
    monkeypatch.setattr(engine.rank, "state_scope", scope)
    seen = _spy(engine, monkeypatch)
    out = engine.run(query="", user_id="u1", market=None, filters={}, k=20, state=state,
                     now_ms=now)
    assert seen["recent_items"] == tuple(ids[4:])
    assert seen["rank_clicks"] == (tuple(ids) if scope == "user" else tuple(ids[4:]))
    assert not set(out.item_ids) & set(ids[4:])  # the session's clicks are not re-shown
    engine.run(query="", user_id="u1", market=None, filters={}, k=20, state=state)
    assert seen["recent_items"] == tuple(ids[1:])  # no request time: the whole state, as before
