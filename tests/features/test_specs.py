"""Feature specs: hand-computed encodings, hashing properties, exact JSON round-trips, errors."""

from __future__ import annotations

import json

import mmh3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.exceptions import ConfigError, NotFittedError
from funnel.features import (
    BucketSpec,
    CrossSpec,
    FeatureSet,
    HashSpec,
    HistorySpec,
    NumericSpec,
    SequenceSpec,
    VocabSpec,
    hash_bucket,
    signed_hash,
)


def test_signed_hash_matches_murmur3_by_hand() -> None:
    bucket, sign = signed_hash("paris", bits=10, seed=7)
    assert bucket == mmh3.hash("paris", 7, signed=False) % 1024
    assert sign == (1.0 if mmh3.hash("paris", (7 + 0x9E3779B9) & 0xFFFFFFFF) >= 0 else -1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=40), st.integers(1, 20))
def test_hash_bucket_is_in_range_signed_and_equals_scalar(values: list[str], bits: int) -> None:
    buckets, signs = hash_bucket(np.array(values, dtype=object), bits)
    assert buckets.min() >= 0 and buckets.max() < 2**bits
    assert set(np.unique(signs)) <= {-1.0, 1.0}
    for v, b, s in zip(values, buckets, signs, strict=True):
        assert (b, s) == signed_hash(v, bits)


def test_signed_hash_signs_are_balanced() -> None:
    _, signs = hash_bucket(np.array([f"v{i}" for i in range(4000)], dtype=object), 8)
    assert abs(signs.mean()) < 0.05


def test_numeric_log1p_standardize_by_hand() -> None:
    fs = FeatureSet([NumericSpec("x", log1p=True)]).fit({"x": [0.0, np.e - 1]})
    # log1p -> [0, 1]; mean 0.5, std 0.5 -> z = [-1, 1]; missing -> mean -> 0
    enc = fs.transform({"x": [0.0, np.e - 1, None]})
    np.testing.assert_allclose(enc.val[:, 0], [-1.0, 1.0, 0.0], atol=1e-6)
    assert enc.idx.tolist() == [[0], [0], [0]]


def test_bucket_edges_are_training_quantiles() -> None:
    x = np.arange(1, 101, dtype=float)
    fs = FeatureSet([BucketSpec("x", n_buckets=4)]).fit({"x": x})
    assert fs.states_[0]["edges"] == pytest.approx([25.75, 50.5, 75.25])
    enc = fs.transform({"x": [1.0, 30.0, 60.0, 99.0, np.nan]})
    assert enc.idx[:, 0].tolist() == [1, 2, 3, 4, 0]  # 0 = missing
    assert fs.num_features == 5


def test_vocab_orders_by_frequency_and_maps_unknown_to_oov() -> None:
    fs = FeatureSet([VocabSpec("c", min_count=2)]).fit({"c": ["b", "a", "b", "a", "b", "z"]})
    assert fs.states_[0]["vocab"] == ["b", "a"]
    assert fs.transform({"c": ["a", "b", "z", "never", None]}).idx[:, 0].tolist() == [2, 1, 0, 0, 0]


def test_fields_get_disjoint_index_ranges() -> None:
    fs = FeatureSet([VocabSpec("a"), HashSpec("h", column="a", bits=3), NumericSpec("x")])
    fs.fit({"a": ["p", "q"], "x": [1.0, 2.0]})
    assert fs.field_sizes == [3, 8, 1]
    enc = fs.transform({"a": ["p", "new"], "x": [1.0, 5.0]})
    assert (enc.idx[:, 0] < 3).all()
    assert ((enc.idx[:, 1] >= 3) & (enc.idx[:, 1] < 11)).all()
    assert (enc.idx[:, 2] == 11).all()


def test_sequence_keeps_last_tokens_and_mean_pools() -> None:
    spec = SequenceSpec("s", max_len=3, bits=8)
    fs = FeatureSet([spec]).fit({"s": [["a"]]})
    enc = fs.transform({"s": [["a", "b", "c", "d"], [], "x|y"]})
    _, sign_b = signed_hash("b", 8)
    assert enc.idx.shape == (3, 3)
    assert enc.idx[0, 0] == signed_hash("b", 8)[0]  # "a" dropped: last 3 kept
    assert enc.val[0, 0] == pytest.approx(sign_b / 3)
    assert (enc.val[1] == 0).all()  # empty history: all padding
    assert np.abs(enc.val[2]).tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert fs.slot_fields.tolist() == [0, 0, 0]


def test_history_maps_recent_items_through_an_attribute_by_hand() -> None:
    cols = {
        "item_id": np.array(["a", "b", "c", "a"], dtype=object),
        "category": np.array(["x", "y", "x", "x"], dtype=object),
        "price": np.array([1.0, 5.0, 9.0, 1.0]),
        "recent_clicks": np.array([[], ["a"], ["a", "b", "zz", "c"], None], dtype=object),
    }
    fs = FeatureSet([HistorySpec("rc_cat", max_len=2),
                     HistorySpec("rc_price", attribute="price", n_buckets=2)]).fit(cols)
    assert fs.states_ is not None
    assert fs.states_[0] == {"vocab": ["x", "y"], "items": {"a": 1, "b": 2, "c": 1}}
    assert fs.states_[1]["items"] == {"a": 1, "b": 2, "c": 2}  # median price 5 -> bands 0|1
    enc = fs.transform(cols)
    # row 2: last two *known* items (b, c) -> y, x; unknown "zz" is skipped
    assert enc.idx[2, :2].tolist() == [2, 1] and enc.val[2, :2].tolist() == [0.5, 0.5]
    assert enc.idx[1, :2].tolist() == [1, 0] and enc.val[1].tolist()[:2] == [1.0, 0.0]
    assert not enc.val[0].any() and not enc.val[3].any()  # empty and missing histories
    # at transform time only the history column is needed (serving has no item columns)
    only = fs.transform({"recent_clicks": cols["recent_clicks"]})
    np.testing.assert_array_equal(only.idx, enc.idx)
    again = FeatureSet.from_dict(json.loads(json.dumps(fs.to_dict())))
    np.testing.assert_array_equal(again.transform(cols).val, enc.val)
    with pytest.raises(ValueError, match="HistorySpec 'h': n_buckets must be 0 .* got 1"):
        FeatureSet([HistorySpec("h", n_buckets=1)]).fit(cols)
    with pytest.raises(KeyError, match="feature 'h' needs column 'brand'"):
        FeatureSet([HistorySpec("h", attribute="brand")]).fit(cols)


def test_cross_hashes_the_joined_values() -> None:
    fs = FeatureSet([CrossSpec("ab", columns=("a", "b"), bits=12)]).fit({"a": ["x"], "b": ["y"]})
    enc = fs.transform({"a": ["x"], "b": ["y"]})
    bucket, sign = signed_hash("x\x1fy", 12)
    assert enc.idx[0, 0] == bucket and enc.val[0, 0] == sign


values = st.one_of(st.none(), st.text(max_size=5))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(values, st.floats(-1e6, 1e6), st.lists(st.text(max_size=3), max_size=4)),
             min_size=1, max_size=30)
)
def test_json_round_trip_gives_identical_encoding(rows: list) -> None:
    cols = {
        "c": np.array([r[0] for r in rows], dtype=object),
        "x": np.array([r[1] for r in rows]),
        "s": np.array([r[2] for r in rows] + [None], dtype=object)[:-1],
    }
    fs = FeatureSet([
        VocabSpec("c"), HashSpec("h", column="c", bits=5), NumericSpec("x", log1p=True),
        BucketSpec("xb", column="x", n_buckets=3), SequenceSpec("s", max_len=2, bits=6),
        CrossSpec("cx", columns=("c", "xb_src"), bits=7),
    ])
    cols["xb_src"] = cols["x"]
    fs.fit(cols)
    again = FeatureSet.from_dict(json.loads(json.dumps(fs.to_dict())))
    a, b = fs.transform(cols), again.transform(cols)
    np.testing.assert_array_equal(a.idx, b.idx)
    np.testing.assert_array_equal(a.val, b.val)


def test_errors_name_what_was_wrong() -> None:
    fs = FeatureSet([VocabSpec("cat")])
    with pytest.raises(NotFittedError, match="not fitted"):
        fs.transform({"cat": ["a"]})
    with pytest.raises(KeyError, match="feature 'cat' needs column 'cat'"):
        fs.fit({"other": ["a"]})
    with pytest.raises(ConfigError, match="type must be one of"):
        FeatureSet.from_specs([{"type": "embedding", "name": "x"}])
    with pytest.raises(ConfigError, match="unknown key"):
        FeatureSet.from_specs([{"type": "hash", "name": "x", "bitz": 3}])
    with pytest.raises(ValueError, match="bits must be in"):
        FeatureSet([HashSpec("h", bits=40)]).fit({"h": ["a"]})
    with pytest.raises(ConfigError, match="unique"):
        FeatureSet([VocabSpec("a"), NumericSpec("a")])
    with pytest.raises(ValueError, match="not numeric"):
        FeatureSet([NumericSpec("x")]).fit({"x": np.array(["a"], dtype=object)})
    with pytest.raises(TypeError, match="mapping of columns"):
        FeatureSet([VocabSpec("a")]).fit([1, 2])


def test_trailing_nul_is_not_dropped_found_by_hypothesis() -> None:
    """numpy 'U' arrays strip trailing NULs, so "\\x00" and "" collided; we use object arrays."""
    buckets, _ = hash_bucket(np.array(["\x00", ""], dtype=object), 20)
    assert buckets.tolist() == [signed_hash("\x00", 20)[0], signed_hash("", 20)[0]]
    fs = FeatureSet([VocabSpec("c")]).fit({"c": np.array(["a\x00", "a"], dtype=object)})
    assert fs.transform({"c": np.array(["a\x00", "a"], dtype=object)}).idx[:, 0].tolist() == [2, 1]
