"""Related queries stay in the query's market/category unless sessions show people crossing.

Issue 20: the related chips of "barcelona loft" held "tokyo modern villa" (a vector neighbour:
both are lodgings). A candidate from another market is kept only when search sessions pair it
with the anchor often enough (``CROSS_MIN_SESSIONS``).
"""

from __future__ import annotations

import numpy as np
import pytest

from funnel.suggest import QuerySuggester, SuggestConfig
from funnel.suggest.related import (
    CROSS_MIN_SESSIONS,
    context_filter,
    dominant,
    query_markets,
    session_pairs,
)
from funnel.vectors import VectorTable

from .conftest import StoreBuilder, ts

CITIES = ("london", "barcelona", "lisbon", "amsterdam", "paris", "rome", "tokyo", "berlin")


def test_dominant_needs_a_clear_majority() -> None:
    assert dominant({"barcelona": 4, "tokyo": 1}) == "barcelona"
    assert dominant({"barcelona": 3, "tokyo": 3}) is None  # a generic query: no market
    assert dominant({}) is None


def test_query_markets_and_session_pairs() -> None:
    index = {"a": 0, "b": 1}
    assert query_markets(["a", "a", "b", "zz"], ["m1", "m1", None, "m2"], index, 2) == \
        ["m1", None]
    assert session_pairs([[0, 1, 0], [1, 0], [2, 3]]) == {(0, 1): 2, (2, 3): 1}


def test_context_filter_market_first_then_category_then_sessions() -> None:
    markets = ["bcn", "tyo", "bcn", None, "lis"]
    categories = ["loft", "villa", "villa", "villa", "loft"]
    crossing = [[0, 4]] * CROSS_MIN_SESSIONS
    keep = context_filter(markets, categories, crossing)
    assert not keep(0, 1)  # another market, never searched together
    assert keep(0, 2)  # same market, another category: the market decides
    assert not keep(0, 3)  # no market on one side: the categories differ
    assert keep(0, 4) and keep(4, 0)  # another market, but the sessions cross it
    assert not context_filter(markets, categories, crossing[:-1])(0, 4)


def _lodging_log(store: StoreBuilder) -> StoreBuilder:
    """Barcelona and Tokyo lodgings; "barcelona loft" -> "lisbon loft" in 3 sessions,
    "barcelona loft" -> "barcelona villa" in 2; "tokyo modern villa" searched alone."""
    for city in ("barcelona", "tokyo", "lisbon"):
        for kind in ("loft", "villa"):
            store.item(f"{city}-{kind}", title=f"{city} {kind}", category=kind, brand="host",
                       price=100.0, market=city)
    for i in range(CROSS_MIN_SESSIONS):
        store.search(f"a{i}", "barcelona loft", ts(days=i), clicks=["barcelona-loft"],
                     market="barcelona")
        store.search(f"a{i}", "lisbon loft", ts(days=i, minutes=2), clicks=["lisbon-loft"],
                     market="lisbon")
    for i in range(2):
        store.search(f"b{i}", "barcelona loft", ts(days=i, minutes=30),
                     clicks=["barcelona-loft"], market="barcelona")
        store.search(f"b{i}", "barcelona villa", ts(days=i, minutes=32),
                     clicks=["barcelona-villa"], market="barcelona")
    for i in range(4):
        store.search(f"t{i}", "tokyo modern villa", ts(days=i, minutes=50),
                     clicks=["tokyo-villa"], market="tokyo")
    return store


def test_related_keeps_market_unless_sessions_cross(store: StoreBuilder) -> None:
    con = _lodging_log(store).connect()
    # a vector table that makes every query a near neighbour of every other
    names = ["barcelona loft", "lisbon loft", "barcelona villa", "tokyo modern villa"]
    vectors = np.array([[1.0, 0.01 * i] for i in range(len(names))], dtype=np.float32)
    model = QuerySuggester(SuggestConfig(min_count=1)).fit(
        con, query_vectors=VectorTable(ids=names, vectors=vectors))
    related = model.related("barcelona loft")
    assert "tokyo modern villa" not in related  # another market, never searched together
    assert "lisbon loft" in related  # another market, but 3 sessions moved between them
    assert "barcelona villa" in related  # same market
    assert "barcelona loft" not in model.related("tokyo modern villa")


@pytest.mark.slow
def test_demo_market_queries_get_chips_of_their_market(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On the synthetic marketplace, a query naming one city gets no chip naming another
    (without the filter: 1,153 of 3,500 chips on 100k events, e.g. "barcelona loft" ->
    "maple lodge apartment london")."""
    from funnel.build import synthetic_workspace
    from funnel.suggest import load_suggest

    ws = synthetic_workspace(tmp_path / "ws", events=20_000, seed=2,
                             stages=("catalog", "embeddings", "suggest"))
    model = load_suggest(ws.artifacts.require_current())
    chips = crossing = 0
    for query in model.queries_:
        own = [c for c in CITIES if c in query.split()]
        if len(own) != 1:
            continue
        for chip in model.related(query, 10):
            chips += 1
            crossing += any(c in chip.split() and c != own[0] for c in CITIES)
    assert chips > 100
    assert crossing == 0
