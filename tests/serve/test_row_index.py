"""The catalog's id -> row index answers exactly as the dict it mirrors: unknown ids, prefixes,
ids longer than any catalog id, unicode, and hash collisions (which go to the dict)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.catalog import Catalog, RowIndex

ids_strategy = st.lists(
    st.one_of(st.text(max_size=6), st.sampled_from(["a", "ab", "abc", "東京", "i001", "i0010"])),
    min_size=1, max_size=40, unique=True,
)


@settings(max_examples=80, deadline=None)
@given(ids_strategy, st.lists(st.text(max_size=9), max_size=20), st.data())
def test_rows_equal_the_dict(ids, others, data):
    table = {item: i for i, item in enumerate(ids)}
    index = RowIndex(ids, table)
    known = data.draw(st.lists(st.sampled_from(ids), max_size=20))
    # fresh string objects, as a request's ids are
    queries = [(q + "x")[:-1] for q in known + others + [ids[0] + "z", ids[-1][:-1]]]
    assert index.rows(queries).tolist() == [table.get(q, -1) for q in queries]


class Colliding(str):
    """A str whose hash collides with every other one's."""

    def __hash__(self) -> int:
        return 42


def test_a_hash_collision_is_answered_by_the_dict():
    ids = [Colliding("a"), Colliding("b"), Colliding("c")]
    table = {item: i for i, item in enumerate(ids)}
    index = RowIndex(ids, table)
    # every probe finds "a"'s slot first: the text check sends "b", "c" and "zz" to the dict
    got = index.rows([Colliding("b"), Colliding("zz"), Colliding("a"), Colliding("c")])
    assert got.tolist() == [1, -1, 0, 2]


def test_ids_that_are_not_strings_are_unknown():
    index = RowIndex(["1", "2"], {"1": 0, "2": 1})
    assert index.rows([1, "2", None]).tolist() == [-1, 1, -1]  # type: ignore[list-item]
    assert index.rows([]).tolist() == []


def test_long_ids_keep_the_dict():
    ids = ["x" * (RowIndex.MAX_ID_CHARS + 1), "y"]
    assert RowIndex.build(ids, {i: r for r, i in enumerate(ids)}) is None
    assert RowIndex.build(["a", "b"], {"a": 0, "b": 1}) is not None


def _catalog(ids: list[str]) -> Catalog:
    return Catalog(ids=np.array(ids, dtype=object), columns={},
                   row={item: i for i, item in enumerate(ids)}, markets=[], demo_users=[])


@settings(max_examples=80, deadline=None)
@given(ids_strategy)
def test_id_rank_orders_rows_as_sorted_orders_their_ids(ids):
    rank = _catalog(ids).id_rank()
    if any(i.endswith("\0") for i in ids):  # numpy text would tie "a" and "a\0"
        assert rank is None
        return
    assert rank is not None and rank.dtype == np.int64
    assert np.argsort(rank).tolist() == sorted(range(len(ids)), key=ids.__getitem__)


def test_id_rank_needs_str_ids():
    assert _catalog([1, 2]).id_rank() is None  # type: ignore[list-item]
