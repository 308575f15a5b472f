"""Popularity reads only the head of its list that can survive the exclusion of recent items:
the same candidates as filtering the whole list, duplicates in a list included."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.recall.base import RecallRequest
from funnel.recall.popularity import GLOBAL, Popularity
from funnel.recall.toplists import TopLists

_ITEMS = [f"i{n}" for n in range(12)]


def _fitted(codes: list[int]) -> Popularity:
    pop = Popularity()
    pop.lists_ = TopLists(
        keys={GLOBAL: 0}, items=np.array(_ITEMS, dtype=object),
        indptr=np.array([0, len(codes)], dtype=np.int64),
        codes=np.array(codes, dtype=np.int32),
        scores=np.arange(len(codes), 0, -1).astype(np.float32),
    )
    return pop


@settings(max_examples=300, deadline=None)
@given(codes=st.lists(st.integers(0, 11), max_size=30), k=st.integers(1, 15),
       recent=st.lists(st.sampled_from(_ITEMS), max_size=8))
def test_candidates_equal_filtering_the_whole_list(codes, k, recent) -> None:
    out = _fitted(codes).candidates(RecallRequest(recent_items=tuple(recent), k=k))
    whole = [(_ITEMS[c], float(len(codes) - j)) for j, c in enumerate(codes)
             if _ITEMS[c] not in set(recent)][:k]
    assert out.item_ids.tolist() == [i for i, _ in whole]
    assert out.scores.tolist() == [s for _, s in whole]


def test_lookup_limit() -> None:
    lists = _fitted([3, 1, 4, 1, 5]).lists_
    assert lists.lookup(GLOBAL, 2)[0].tolist() == ["i3", "i1"]
    assert lists.lookup(GLOBAL, 99)[0].tolist() == ["i3", "i1", "i4", "i1", "i5"]
    assert lists.lookup("nowhere", 2)[0].tolist() == []
    with pytest.raises(ValueError, match=r"'limit' must be >= 0 or None; got -1"):
        lists.lookup(GLOBAL, -1)
