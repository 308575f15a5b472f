"""A returning user's earlier sessions reach recall through the served engine."""

from __future__ import annotations

from funnel.engine.core import Engine
from funnel.features.personalization import RecentActions
from funnel.recall.base import RecallRequest
from funnel.serve.state import apply_events

HOUR = 3_600_000


def _one_market(engine: Engine, market: str | None = None) -> list[str]:
    """Catalog items of one market (the first item's, unless named)."""
    markets = engine.catalog.attributes(engine.catalog.ids.tolist())["market"]
    market = market or markets[0]
    return [i for i, m in zip(engine.catalog.ids.tolist(), markets, strict=True) if m == market]


def test_the_engine_hands_recall_the_earlier_sessions_not_the_one_in_progress(
        served_workspace) -> None:
    engine = Engine.load(served_workspace.artifacts.require_current())
    try:
        items = _one_market(engine)[:4]
        hour = HOUR
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


def test_a_returning_users_items_from_another_market_stay_out_of_this_markets_feed(
        served_workspace) -> None:
    engine = Engine.load(served_workspace.artifacts.require_current())
    try:
        markets = sorted({str(m) for m in engine.catalog.attributes(
            engine.catalog.ids.tolist())["market"] if m})
        here, there = _one_market(engine, markets[0]), _one_market(engine, markets[1])
        events = [{"event_type": "click", "item_id": i, "ts_ms": t} for i, t in
                  ((there[0], 0), (here[5], 60_000), (there[1], 120_000),  # last week's trip
                   (here[0], 24 * HOUR), (here[1], 24 * HOUR + 60_000))]  # this session: here
        state = apply_events(RecentActions(max_len=50), events)
        asked: list[RecallRequest] = []
        real = engine.recall.merger.recall
        engine.recall.merger.recall = lambda r: asked.append(r) or real(r)  # type: ignore
        engine.run(query="", user_id="u1", market=None, filters={}, k=10, state=state,
                   now_ms=24 * HOUR + 120_000)
        assert asked[-1].market == markets[0]
        assert asked[-1].earlier_items == (here[5],)  # the other market's two are left out
        assert engine.in_market((there[0], here[5], "no-such-item"), None) == (
            there[0], here[5], "no-such-item")  # no market: nothing left out
        assert engine.in_market((there[0], "no-such-item"), markets[0]) == ("no-such-item",)
    finally:
        engine.close()
