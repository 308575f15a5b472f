"""A returning user's earlier sessions reach recall through the served engine."""

from __future__ import annotations

from funnel.engine.core import Engine
from funnel.features.personalization import RecentActions
from funnel.recall.base import RecallRequest
from funnel.serve.state import apply_events


def test_the_engine_hands_recall_the_earlier_sessions_not_the_one_in_progress(
        served_workspace) -> None:
    engine = Engine.load(served_workspace.artifacts.require_current())
    try:
        items = engine.catalog.ids[:4].tolist()
        hour = 3_600_000
        events = [{"event_type": "click", "item_id": i, "ts_ms": t} for i, t in
                  ((items[0], 0), (items[1], 60_000), (items[0], 120_000),  # yesterday
                   (items[2], 24 * hour), (items[3], 24 * hour + 60_000))]  # this session
        state = apply_events(RecentActions(max_len=50), events)
        asked: list[RecallRequest] = []
        merger = engine.recall.merger
        real = merger.recall
        merger.recall = lambda request: asked.append(request) or real(request)  # type: ignore
        res = engine.run(query="", user_id="u1", market=None, filters={}, k=10, state=state,
                         now_ms=24 * hour + 120_000, debug=True)
        assert asked[-1].earlier_items == (items[0], items[1], items[0])
        assert asked[-1].recent_items == (items[2], items[3])
        assert items[0] in real(asked[-1]).item_ids.tolist()  # offered again
        assert items[2] not in res.item_ids  # the session's own clicks are not re-shown
        engine.run(query="", user_id="u1", market=None, filters={}, k=10, state=state,
                   now_ms=None)
        assert asked[-1].earlier_items == ()  # no request time: no telling sessions apart
    finally:
        engine.close()
