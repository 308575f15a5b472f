"""Co-visitation, popularity and query -> items on hand-computed examples."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from funnel.exceptions import ArtifactError, NotFittedError
from funnel.recall.base import RecallRequest
from funnel.recall.covisit import CoVisitation
from funnel.recall.popularity import Popularity
from funnel.recall.query_items import QueryItems
from funnel.recall.toplists import TopLists

T0 = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)
TS = pa.timestamp("ms", tz="UTC")


def sessions_table() -> pa.Table:
    return pa.table({
        "session_id": ["s1", "s2", "s3"],
        "end_ts": pa.array([T0, T0 - dt.timedelta(days=30), T0 - dt.timedelta(days=10)], TS),
        "items": [["a", "b", "c"], ["a", "d"], ["x", "y"]],
        "booked_item": [None, "d", None],
    })


def test_covisit_weights_by_distance_recency_and_booking():
    model = CoVisitation(window=3, half_life_days=30, click_weight=1, booking_weight=3)
    ids, scores = model.fit(sessions_table()).neighbors_.lookup("a")
    # d: click pair at distance 1 in a 30-day-old session (0.5) + booking 3 * 0.5 = 2.0
    # b: distance 1, fresh -> 1.0; c: distance 2, fresh -> 0.5
    assert ids.tolist() == ["d", "b", "c"]
    np.testing.assert_allclose(scores, [2.0, 1.0, 0.5], rtol=1e-6)
    ids, scores = model.neighbors_.lookup("c")
    assert ids.tolist() == ["b", "a"]
    np.testing.assert_allclose(scores, [1.0, 0.5])


def test_covisit_window_limits_pairs():
    model = CoVisitation(window=1).fit(sessions_table())
    assert model.neighbors_.lookup("a")[0].tolist() == ["d", "b"]  # c is 2 steps away


def test_covisit_candidates_combine_recent_items_and_exclude_them():
    model = CoVisitation(recent_decay=0.5).fit(sessions_table())
    cands = model.candidates(RecallRequest(recent_items=["x", "a"], k=10))
    # a (most recent, weight 1) / its best neighbour 2.0: d 1.0, b 0.5, c 0.25; x -> y: 0.5 * 1
    assert cands.item_ids.tolist() == ["d", "b", "y", "c"]
    np.testing.assert_allclose(cands.scores, [1.0, 0.5, 0.5, 0.25])
    assert len(model.candidates(RecallRequest(recent_items=["unknown"]))) == 0


def test_covisit_round_trip_and_errors(tmp_path):
    model = CoVisitation().fit(sessions_table())
    model.save(tmp_path / "cv")
    loaded = CoVisitation.load(tmp_path / "cv")
    req = RecallRequest(recent_items=["a"], k=5)
    assert loaded.candidates(req).item_ids.tolist() == model.candidates(req).item_ids.tolist()
    assert loaded.get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        CoVisitation().candidates(req)
    with pytest.raises(ValueError, match="missing column"):
        CoVisitation().fit(pa.table({"session_id": ["s"]}))
    with pytest.raises(ValueError, match="'window' parameter must be a positive int. Got 0"):
        CoVisitation(window=0).fit(sessions_table())
    with pytest.raises(ArtifactError, match="expected format"):
        Popularity.load(tmp_path / "cv")


def events_table() -> pa.Table:
    rows = [
        # ts offset (days), user, type, item, query, market
        (0, "u1", "click", "a", None, "paris"),
        (0, "u1", "booking", "b", None, "paris"),
        (14, "u2", "click", "b", None, "paris"),
        (14, "u2", "click", "c", None, "paris"),
        (0, "u3", "impression", "c", None, "paris"),
        (0, "u3", "click", "z", None, "rome"),
    ]
    return pa.table({
        "ts": pa.array([T0 - dt.timedelta(days=r[0]) for r in rows], TS),
        "user_id": [r[1] for r in rows],
        "event_type": [r[2] for r in rows],
        "item_id": [r[3] for r in rows],
        "query": pa.array([r[4] for r in rows], pa.string()),
        "market": [r[5] for r in rows],
    })


def test_popularity_decays_with_age_and_weights_event_types():
    pop = Popularity(half_life_days=14, click_weight=1, booking_weight=5).fit(events_table())
    cands = pop.candidates(RecallRequest(market="paris", k=10))
    # b: booking 5 (fresh) + click 0.5 (14 days) = 5.5; a: 1; c: 0.5 (impression counts 0)
    assert cands.item_ids.tolist() == ["b", "a", "c"]
    np.testing.assert_allclose(cands.scores, [5.5, 1.0, 0.5])
    assert pop.candidates(RecallRequest(market="rome")).item_ids.tolist() == ["z"]
    # unknown market -> global list, and recent items are excluded
    glob = pop.candidates(RecallRequest(market="mars", recent_items=["b"]))
    assert glob.item_ids.tolist() == ["a", "z", "c"]


def test_query_items_attributes_clicks_to_the_latest_search_within_window(tmp_path):
    base = T0
    rows = [
        (0, "u1", "search", None, "Paris Hotel"),
        (1, "u1", "click", "h1", None),
        (2, "u1", "booking", "h1", None),
        (3, "u1", "search", None, "rome"),
        (4, "u1", "click", "r1", None),
        (60, "u1", "click", "late", None),  # 56 min after "rome": outside the 30-min window
        (0, "u2", "search", None, "paris  hotel"),
        (5, "u2", "click", "h2", None),
    ]
    ev = pa.table({
        "ts": pa.array([base + dt.timedelta(minutes=r[0]) for r in rows], TS),
        "user_id": [r[1] for r in rows], "event_type": [r[2] for r in rows],
        "item_id": pa.array([r[3] for r in rows], pa.string()),
        "query": pa.array([r[4] for r in rows], pa.string()),
    })
    qi = QueryItems(click_weight=1, booking_weight=3).fit(ev)
    paris = qi.candidates(RecallRequest(query="PARIS hotel"))
    assert paris.item_ids.tolist() == ["h1", "h2"]
    np.testing.assert_allclose(paris.scores, [4.0, 1.0])
    assert qi.candidates(RecallRequest(query="rome")).item_ids.tolist() == ["r1"]
    assert len(qi.candidates(RecallRequest(query="berlin"))) == 0
    qi.save(tmp_path / "qi")
    again = QueryItems.load(tmp_path / "qi").candidates(RecallRequest(query="paris hotel"))
    assert again.item_ids.tolist() == ["h1", "h2"]


def test_toplists_keep_top_n_sorted_and_round_trip(tmp_path):
    table = pa.table({"key": ["k", "k", "k", "j"], "item": ["a", "b", "c", "a"],
                      "score": [1.0, 3.0, 2.0, 9.0]})
    lists = TopLists.from_table(table, top_n=2)
    assert lists.lookup("k")[0].tolist() == ["b", "c"]
    lists.save(tmp_path, "t")
    back = TopLists.load(tmp_path, "t")
    assert back.lookup("j")[0].tolist() == ["a"] and back.lookup("none")[0].tolist() == []
