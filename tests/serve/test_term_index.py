"""The vectorized query match the server uses equals the pairwise function training uses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.features.query_match import QUERY_MATCH_FEATURES, TermIndex, query_match_features

WORDS = ["paris", "pari", "loft", "lofts", "lof", "cabin", "cabins", "berlin", "berln", "tokyo",
         "東京", "ＬＯＦＴ", "Studio", "stud", "ab", "a", "seaside", "sea", "villa", "vila"]
texts = st.one_of(
    st.none(),
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=4).map(" ".join),
    st.text(max_size=12),
)


def pairwise(query, titles, cats, brands, markets):
    n = len(titles)
    return query_match_features([query] * n, titles, cats, brands, markets)


def assert_same(query, titles, cats, brands, markets, rows):
    index = TermIndex(titles, cats, brands, markets)
    got = index.features(query, rows)
    pick = [list(np.asarray(c, dtype=object)[rows]) for c in (titles, cats, brands, markets)]
    want = pairwise(query, *pick)
    assert list(got) == list(QUERY_MATCH_FEATURES)
    for name in QUERY_MATCH_FEATURES:
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@settings(max_examples=150, deadline=None)
@given(
    query=texts,
    items=st.lists(st.tuples(texts, texts, texts, texts), min_size=1, max_size=12),
    data=st.data(),
)
def test_term_index_equals_pairwise_features(query, items, data):
    titles, cats, brands, markets = (list(c) for c in zip(*items, strict=True))
    rows = data.draw(st.lists(st.integers(0, len(items) - 1), max_size=20))
    assert_same(query, titles, cats, brands, markets, np.array(rows, dtype=np.int64))


def test_term_index_equals_pairwise_on_a_random_catalog():
    rng = np.random.default_rng(5)

    def text(k):
        return " ".join(rng.choice(WORDS, size=rng.integers(0, k + 1)).tolist()) or None

    n = 400
    cols = [[text(4) for _ in range(n)], [text(1) for _ in range(n)],
            [text(2) for _ in range(n)], [text(1) for _ in range(n)]]
    for query in ["paris loft", "pari lofts", "Cabin sea", "ab", "", None, "東京 villa", "xyz"]:
        rows = rng.integers(0, n, size=300)
        assert_same(query, *cols, rows)
    # a hand-checked row: "paris lofst" (a typo) against title "loft studio", market "paris"
    index = TermIndex(["loft studio"], [None], [None], ["paris"])
    got = index.features("paris lofst", np.array([0]))
    assert [float(got[f][0]) for f in QUERY_MATCH_FEATURES] == [0.5, 1.0, 0.0, 0.0, 1.0, 1.0]


def test_term_index_rejects_bad_rows_and_misaligned_columns():
    index = TermIndex(["a"], ["b"], ["c"], ["d"])
    with pytest.raises(ValueError, match=r"'rows' must be a 1-D array of rows in \[0, 1\)"):
        index.features("a", np.array([1]))
    with pytest.raises(ValueError, match="'brands' has 2 rows; expected 1"):
        TermIndex(["a"], ["b"], ["c", "d"], ["e"])


def test_take_reorders_rows_and_keeps_the_values():
    rng = np.random.default_rng(9)
    n = 200
    cols = [[" ".join(rng.choice(WORDS, size=rng.integers(0, 4)).tolist()) or None
             for _ in range(n)] for _ in range(4)]
    index = TermIndex(*cols)
    order = rng.permutation(n)[:150]
    sub = index.take(order)
    assert len(sub) == 150
    picks = rng.integers(0, 150, size=80)
    for query in ["paris lofts", "cabin", "vila sea", None]:
        got, want = sub.features(query, picks), index.features(query, order[picks])
        for name in QUERY_MATCH_FEATURES:
            np.testing.assert_array_equal(got[name], want[name])
    with pytest.raises(ValueError, match=r"TermIndex.take: 'rows' must be a 1-D array"):
        index.take(np.array([n]))
