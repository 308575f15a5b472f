"""Session filtering and encoding (paper sec. 3.1), with hand-built and property-based inputs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.embed.corpus import build_corpus, normalize_query
from funnel.exceptions import ModelFitError


def table(items, dwell=None, booked=None, market=None) -> pa.Table:
    cols = {"items": pa.array(items, type=pa.list_(pa.string()))}
    if dwell is not None:
        cols["dwell_ms"] = pa.array(dwell, type=pa.list_(pa.int64()))
    if booked is not None:
        cols["booked_item"] = pa.array(booked, type=pa.string())
    if market is not None:
        cols["market"] = pa.array(market, type=pa.string())
    return pa.table(cols)


def decode(corpus) -> list[list[str]]:
    return [[corpus.vocab[t] for t in corpus.tokens[a:b]]
            for a, b in zip(corpus.offsets[:-1], corpus.offsets[1:], strict=True)]


def test_short_dwell_clicks_and_one_click_sessions_are_dropped_booked_item_kept() -> None:
    t = table(
        [["a", "b", "c"], ["d", "e"], ["f"]],
        dwell=[[5000, 100, 5000], [100, 9000], [9000]],
        booked=["c", None, None],
    )
    c = build_corpus(t, min_dwell_ms=2000)
    assert decode(c) == [["a", "c"]]  # b accidental; "d" accidental -> 1 click left; "f" alone
    assert c.booked.tolist() == [c.vocab.index("c")]
    t2 = table([["a", "b"]], dwell=[[5000, 100]], booked=["b"])
    assert decode(build_corpus(t2, min_dwell_ms=2000)) == [["a", "b"]]  # booked never accidental


def test_min_count_drops_rare_items_then_short_sessions() -> None:
    t = table([["a", "b", "a"], ["a", "rare"], ["b", "a"]])
    c = build_corpus(t, min_count=2)
    assert decode(c) == [["a", "b", "a"], ["b", "a"]]
    assert c.vocab == ["a", "b"] and c.counts.tolist() == [4, 2]


def test_markets_come_from_the_catalog_or_the_sessions() -> None:
    t = table([["a", "b"], ["a", "c"], ["a", "c"]], market=["m1", "m2", "m2"])
    c = build_corpus(t)
    assert {tok: c.markets[c.word_market[i]] for i, tok in enumerate(c.vocab)} == {
        "a": "m2", "b": "m1", "c": "m2"}
    c2 = build_corpus(t, item_markets={"a": "x", "b": "y"})
    assert c2.markets == ["x", "y"] and c2.word_market[c2.vocab.index("c")] == -1


def test_nothing_left_is_a_model_fit_error_naming_the_filters() -> None:
    with pytest.raises(ModelFitError, match="min_count=5"):
        build_corpus(table([["a", "b"]]), min_count=5)


def test_bad_input_type_is_rejected_with_what_was_expected() -> None:
    with pytest.raises(TypeError, match="got int"):
        build_corpus(42)
    with pytest.raises(ValueError, match="'items' column"):
        build_corpus(pa.table({"x": [1]}))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("abcdefg"), max_size=6), max_size=20),
       st.integers(1, 3))
def test_encoding_round_trips_kept_sessions(sessions: list[list[str]], min_count: int) -> None:
    try:
        c = build_corpus(sessions, min_count=min_count)
    except ModelFitError:
        return
    counts = {}
    for s in sessions:
        for x in s:
            counts[x] = counts.get(x, 0) + 1
    expected = [[x for x in s if counts[x] >= min_count] for s in sessions]
    assert decode(c) == [s for s in expected if len(s) >= 2]
    assert np.all(np.diff(c.counts) <= 0)
    assert c.offsets[-1] == c.tokens.shape[0]


@given(st.text(max_size=30))
def test_normalize_query_is_idempotent_and_lowercase(text: str) -> None:
    once = normalize_query(text)
    assert normalize_query(once) == once
    assert once == once.lower() and "  " not in once and once == once.strip()


def test_unknown_dwell_is_never_accidental() -> None:
    t = table([["a", "b", "c"]], dwell=[[None, 100, None]])
    assert decode(build_corpus(t, min_dwell_ms=2000)) == [["a", "c"]]
