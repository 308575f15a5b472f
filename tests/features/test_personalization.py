"""Airbnb KDD'18 real-time personalization features on hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.features.personalization import (
    PROFILE_ITEMS,
    STATE_WINDOW,
    ItemVectorLookup,
    RecentActions,
    clip_state,
    cooccurrence_vectors,
    observe,
    personalization_features,
)
from funnel.vectors import save_vectors

IDS = ["a", "b", "c", "d"]
VEC = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)


def test_similarities_by_hand() -> None:
    lk = ItemVectorLookup(IDS, VEC, item_market={"a": "m1", "b": "m2", "c": "m1", "d": "m1"})
    recent = RecentActions(clicks=("a", "b"), skips=("d",), bookings=("c",),
                           long_clicks=(("b", 100),))
    f = personalization_features(["a", "c", "zzz"], recent, lk, now_ms=200)
    # clicks grouped by market: m1 -> a, m2 -> b; candidate takes the max over centroids
    assert f["emb_click_sim"] == pytest.approx([1.0, np.sqrt(0.5), 0.0], abs=1e-6)
    assert f["emb_last_click_sim"] == pytest.approx([0.0, np.sqrt(0.5), 0.0], abs=1e-6)
    assert f["emb_skip_sim"] == pytest.approx([-1.0, -np.sqrt(0.5), 0.0], abs=1e-6)
    assert f["emb_book_sim"] == pytest.approx([np.sqrt(0.5), 1.0, 0.0], abs=1e-6)
    assert f["emb_long_click_sim"] == pytest.approx([0.0, np.sqrt(0.5), 0.0], abs=1e-6)
    # before the long click's dwell reached the threshold it is invisible
    early = personalization_features(["c"], recent, lk, now_ms=50)
    assert early["emb_long_click_sim"][0] == 0.0


def test_type_similarity_needs_user_type_and_item_types() -> None:
    types = {"user_type:x": np.array([1.0, 0.0]), "item_type:p": np.array([0.0, 2.0]),
             "item_type:q": np.array([3.0, 3.0])}
    lk = ItemVectorLookup(IDS, VEC, item_type={"a": "item_type:p", "b": "item_type:q"},
                          type_vectors=types)
    f = personalization_features(["a", "b", "c"], RecentActions(user_type="user_type:x"), lk)
    assert f["emb_type_sim"] == pytest.approx([0.0, np.sqrt(0.5), 0.0], abs=1e-6)
    assert personalization_features(["b"], RecentActions(), lk)["emb_type_sim"][0] == 0.0


def test_type_similarity_from_bookings_as_of_now() -> None:
    from funnel.embed.types import NEW_USER, TypeLookup, TypeRules

    rules = TypeRules(item_fields=("market",), user_fields=("market", "n_bookings"))
    catalog = [{"item_id": "a", "market": "m1", "price": 5.0},
               {"item_id": "b", "market": "m2", "price": 7.0}]
    names = [NEW_USER, "user_type:market=m1|n_bookings=1", "item_type:market=m1",
             "item_type:market=m2"]
    vec = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [1.0, 1.0]])
    lk = ItemVectorLookup(IDS, VEC, types=TypeLookup.from_parts(rules, {}, catalog, names, vec))
    new = personalization_features(["a", "b", "zzz"], RecentActions(), lk)["emb_type_sim"]
    assert new == pytest.approx([0.6, np.sqrt(0.5), 0.0], abs=1e-6)
    booked = RecentActions(bookings=("a", "unknown-item"))  # unknown ids do not count
    one = personalization_features(["a", "b"], booked, lk)["emb_type_sim"]
    assert one == pytest.approx([0.8, np.sqrt(0.5)], abs=1e-6)
    # a user type never seen in training scores 0, not an error
    three = personalization_features(["a"], RecentActions(bookings=("a",) * 3), lk)
    assert three["emb_type_sim"][0] == 0.0


def test_observe_derives_skips_above_the_clicked_position() -> None:
    r = RecentActions()
    for pos, item in enumerate(["a", "b", "c", "d"], start=1):
        r = observe(r, "impression", item, ts_ms=0, request_id="q1", position=pos)
    r = observe(r, "click", "c", ts_ms=10, request_id="q1", dwell_ms=120_000)
    assert r.clicks == ("c",)
    assert r.skips == ("a", "b")  # shown above c, not clicked; d was below
    assert r.long_clicks == (("c", 60_010),)
    r = observe(r, "booking", "c", ts_ms=20)
    assert r.bookings == ("c",)
    short = observe(RecentActions(), "click", "a", ts_ms=0, dwell_ms=5)
    assert short.long_clicks == ()


def test_history_is_bounded() -> None:
    r = RecentActions(max_len=3)
    for k in range(10):
        r = observe(r, "click", f"i{k}", ts_ms=k)
    assert r.clicks == ("i7", "i8", "i9")


def test_lookup_reads_the_embedding_artifact(tmp_path) -> None:
    save_vectors(tmp_path, "item", IDS, VEC * 3)
    lk = ItemVectorLookup.from_directory(tmp_path)
    np.testing.assert_allclose(np.linalg.norm(lk.vectors, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match=r"vectors must be \(n_ids, d\)"):
        ItemVectorLookup(["a"], VEC)


def test_cooccurrence_vectors_put_co_clicked_items_together() -> None:
    sessions = [["a1", "a2", "a3"]] * 20 + [["b1", "b2", "b3"]] * 20 + [["a1", "b1"]]
    ids, vec = cooccurrence_vectors(sessions, dim=3)
    lk = ItemVectorLookup(ids, vec)
    f = personalization_features(["a2", "b2"], RecentActions(clicks=("a3",)), lk)
    assert f["emb_click_sim"][0] > f["emb_click_sim"][1] + 0.5


def test_taste_features_by_hand() -> None:
    lk = ItemVectorLookup(IDS, VEC, item_brand={"a": "x", "b": "y", "c": "x", "d": "y"},
                          item_category={"a": "loft", "b": "loft", "c": "villa", "d": "loft"})
    shown = (("r1", 1, "a"), ("r1", 2, "b"), ("r1", 3, "d"))
    recent = RecentActions(clicks=("a",), shown=shown,
                           tally=(("a", 1, 1), ("b", 1, 0), ("d", 1, 0)))
    f = personalization_features(["a", "b", "c", "zzz"], recent, lk)
    # mean(clicked) - mean(shown) = [1, 0] - [0, 1/3] = [1, -1/3]; c = [1, 1] / sqrt(2)
    want = [1.0, -1 / 3, (2 / 3) / np.sqrt(2), 0.0]
    assert f["taste_contrast_sim"] == pytest.approx(want, abs=1e-6)
    assert f["user_item_clicks"].tolist() == [1, 0, 0, 0]
    assert f["user_item_shown"].tolist() == [1, 1, 0, 0]
    # user rate (1 + .5) / (3 + 1) = .375; brand x: 1 of 1 shown, y: 0 of 2, prior 2 at .375
    x, y = (1 + 0.75) / 3 - 0.375, 0.75 / 4 - 0.375
    assert f["user_brand_lift"] == pytest.approx([x, y, x, 0.0], abs=1e-6)
    # category loft: 1 click of 3 shown, prior 2 at .375; villa never shown
    loft = (1 + 0.75) / 5 - 0.375
    assert f["user_category_lift"] == pytest.approx([loft, loft, 0.0, 0.0], abs=1e-6)


def test_lifts_read_the_whole_profile_not_the_ranker_window() -> None:
    lk = ItemVectorLookup(IDS, VEC, item_brand={"a": "x", "b": "y", "c": "x", "d": "y"},
                          item_category={"a": "loft", "b": "loft", "c": "villa", "d": "loft"})
    whole = RecentActions(max_len=50)
    for kind, item, pos in (("impression", "c", 1), ("impression", "a", 2), ("click", "c", 1)):
        whole = observe(whole, kind, item, ts_ms=0, request_id="r0", position=pos)
    cut = RecentActions(max_len=10)  # the ranker's window, empty: the profile is older
    window_only = personalization_features(["a", "c"], cut, lk)
    with_profile = personalization_features(["a", "c"], cut, lk, profile=whole)
    assert window_only["user_category_lift"].tolist() == [0.0, 0.0]
    # rate (1 + .5) / 3 = .5; villa 1 of 1, loft 0 of 1, prior 2 at .5
    assert with_profile["user_category_lift"] == pytest.approx([1 / 3 - 0.5, 2 / 3 - 0.5])
    assert with_profile["user_brand_lift"] == pytest.approx([0.5 - 0.5, 0.5 - 0.5])
    assert with_profile["taste_contrast_sim"].tolist() == [0.0, 0.0]  # still the window's


def test_tally_outlives_the_window_and_counts_every_impression() -> None:
    """The lifts' counts cover the whole history: 60 requests later the first impressions
    still count, where the 200-impression window has long dropped them."""
    lk = ItemVectorLookup(IDS, VEC, item_category={"a": "loft", "b": "loft", "c": "villa",
                                                   "d": "loft"})
    r = RecentActions(max_len=STATE_WINDOW)
    for q in range(60):
        for pos, item in enumerate(("a", "b", "c", "d"), 1):
            r = observe(r, "impression", item, ts_ms=q, request_id=f"q{q}", position=pos)
        if q % 3 == 0:
            r = observe(r, "click", "c", ts_ms=q, request_id=f"q{q}", position=3)
    assert len(r.shown) == 4 * STATE_WINDOW and {i: (s, c) for i, s, c in r.tally} == {
        "a": (60, 0), "b": (60, 0), "c": (60, 20), "d": (60, 0)}
    r = observe(r, "click", "c", ts_ms=99, request_id="gone", position=1)  # no impression
    r = observe(r, "click", "b", ts_ms=99)  # a browse click: not a hit either
    assert {i: (s, c) for i, s, c in r.tally}["c"] == (60, 20)
    f = personalization_features(["a", "c"], clip_state(r, 10), lk, profile=r)
    rate = (20 + 0.5) / (240 + 1)  # a hit is a click on the impression itself
    want = [(0 + 2 * rate) / (180 + 2) - rate, (20 + 2 * rate) / (60 + 2) - rate]
    assert f["user_category_lift"] == pytest.approx(want, abs=1e-6)


def test_tally_keeps_the_most_recently_touched_items() -> None:
    r = RecentActions(max_len=2)
    for n in range(PROFILE_ITEMS + 5):
        r = observe(r, "impression", f"i{n}", ts_ms=n, request_id="q", position=1)
    r = observe(r, "impression", "i5", ts_ms=10**6, request_id="q", position=1)
    assert len(r.tally) == PROFILE_ITEMS
    assert r.tally[-1] == ("i5", 2, 0)  # touched again: kept, counts added, moved last
    assert [i for i, _, _ in r.tally[:2]] == ["i6", "i7"]  # i0-i4 dropped first
    assert observe(r, "booking", "i9", ts_ms=1).tally == r.tally  # bookings are not counted


def test_taste_features_are_zero_without_history_or_brands() -> None:
    lk = ItemVectorLookup(IDS, VEC)
    shown = (("r1", 1, "a"), ("r1", 2, "b"))
    for recent in (RecentActions(), RecentActions(shown=shown),
                   RecentActions(clicks=("a",))):
        f = personalization_features(["a", "b"], recent, lk)
        assert f["taste_contrast_sim"].tolist() == [0.0, 0.0]
        assert f["user_brand_lift"].tolist() == [0.0, 0.0]  # no brands in the lookup
        assert f["user_category_lift"].tolist() == [0.0, 0.0]
    f = personalization_features(["a", "b"], RecentActions(clicks=("zz",), shown=shown), lk)
    assert f["taste_contrast_sim"].tolist() == [0.0, 0.0]  # no known clicked vector


def test_observe_keeps_the_shown_window_taste_features_read() -> None:
    r = RecentActions(max_len=2)
    for pos in range(1, 12):
        r = observe(r, "impression", f"i{pos}", ts_ms=0, request_id="q", position=pos)
    assert [i for _, _, i in r.shown] == [f"i{p}" for p in range(4, 12)]  # 4 x max_len
    f = personalization_features(["i1", "i4"], r, ItemVectorLookup(IDS, VEC))
    assert f["user_item_shown"].tolist() == [0, 1]


_ITEM = st.sampled_from(["a", "b", "c", "d", "x", "y"])  # x, y have no vector


@settings(max_examples=200, deadline=None)
@given(candidates=st.lists(_ITEM, max_size=12), clicks=st.lists(_ITEM, max_size=6),
       shown=st.lists(_ITEM, max_size=10))
def test_item_counts_match_a_lookup_per_candidate(candidates, clicks, shown) -> None:
    lk = ItemVectorLookup(IDS, VEC)
    recent = RecentActions(clicks=tuple(clicks),
                           shown=tuple(("r", p, i) for p, i in enumerate(shown)))
    f = personalization_features(candidates, recent, lk)
    assert f["user_item_clicks"].tolist() == [float(clicks.count(i)) for i in candidates]
    assert f["user_item_shown"].tolist() == [float(shown.count(i)) for i in candidates]
    assert f["user_item_clicks"].dtype == np.float32 and len(f["user_item_shown"]) == len(
        candidates)
