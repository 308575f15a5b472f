"""Splits, the DiffRec split format, and Recall/NDCG on hand-computed cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.data.paths import shared_data_dir
from funnel.exceptions import DataFileError
from funnel.generative.metrics import recall_ndcg, top_k
from funnel.generative.splits import (
    InteractionSplit,
    load_diffrec_split,
    load_movielens_split,
    read_recbole_inter,
    save_diffrec_split,
    split_per_user,
)

ML100K = shared_data_dir() / "movielens-100k" / "ml-100k.inter"


def test_top_k_excludes_and_orders() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 0, 0]], dtype=np.float32))
    assert top_k(scores, 2, exclude).tolist() == [[3, 2], [1, 2]]
    assert top_k(scores, 10).shape == (2, 4)  # over-large k is clamped
    with pytest.raises(ValueError, match="'k' parameter must be >= 1"):
        top_k(scores, 0)


def test_recall_ndcg_hand_computed() -> None:
    ranked = np.array([[5, 1, 7], [2, 3, 4], [0, 1, 2]])
    truth = sp.csr_matrix(
        (np.ones(4), ([0, 0, 1, 1], [1, 9, 4, 8])), shape=(3, 10)
    )  # user 2 has no held-out items and is skipped
    recall, ndcg = recall_ndcg(ranked, truth, 3)
    # user 0: hit at rank 2 of 2 true -> recall 1/2, dcg 1/log2(3), idcg 1 + 1/log2(3)
    # user 1: hit at rank 3 of 2 true -> recall 1/2, dcg 1/log2(4) = 0.5
    idcg = 1 + 1 / math.log2(3)
    assert recall == pytest.approx(0.5)
    assert ndcg == pytest.approx(((1 / math.log2(3)) / idcg + 0.5 / idcg) / 2)


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 9), st.integers(0, 10**6)),
                min_size=1, max_size=80))
@settings(max_examples=60, deadline=None)
def test_split_per_user_partitions_chronologically(rows: list[tuple[int, int, int]]) -> None:
    users = np.array([f"u{r[0]}" for r in rows], dtype=object)
    items = np.array([f"i{r[1]}" for r in rows], dtype=object)
    ts = np.array([float(r[2]) for r in rows])
    split, user_ids, item_ids = split_per_user(users, items, ts)
    assert len(split.train) + len(split.valid) + len(split.test) == len(rows)
    assert split.n_users == len(set(users)) and split.n_items == len(set(items))
    # every user's train interactions happen no later than their test interactions
    time_of = {}
    for u, i, t in zip(users, items, ts, strict=True):
        time_of.setdefault((u, i), []).append(t)
    for uid in range(split.n_users):
        tr = [min(time_of[(user_ids[uid], item_ids[i])]) for u, i in split.train if u == uid]
        te = [max(time_of[(user_ids[uid], item_ids[i])]) for u, i in split.test if u == uid]
        if tr and te:
            assert min(tr) <= max(te)
    assert len(np.unique(split.train[:, 0])) == split.n_users  # nobody loses all training data


def test_split_rejects_bad_ratios() -> None:
    with pytest.raises(ValueError, match="'ratios' parameter must be 3 shares summing to 1"):
        split_per_user(np.array(["a"]), np.array(["b"]), np.array([1.0]), ratios=(0.5, 0.5, 0.5))


def test_diffrec_format_round_trip(tmp_path: Path) -> None:
    split = InteractionSplit(
        3, 4, np.array([[0, 1], [1, 2], [2, 3]]), np.array([[0, 2]]), np.array([[2, 0], [1, 1]])
    )
    save_diffrec_split(split, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "test_list.npy", "train_list.npy", "valid_list.npy"]
    back = load_diffrec_split(tmp_path)
    assert (back.n_users, back.n_items) == (3, 4)
    for part in ("train", "valid", "test"):
        assert np.array_equal(getattr(back, part), getattr(split, part))
    assert back.matrix("valid").toarray().tolist()[0] == [0, 0, 1, 0]


def test_diffrec_loader_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such directory"):
        load_diffrec_split(tmp_path / "nope")
    np.save(tmp_path / "train_list.npy", np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(DataFileError, match="valid_list.npy: missing"):
        load_diffrec_split(tmp_path)
    np.save(tmp_path / "valid_list.npy", np.zeros((3, 3), dtype=np.int64))
    np.save(tmp_path / "test_list.npy", np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(DataFileError, match=r"\[user, item\]; got \(3, 3\)"):
        load_diffrec_split(tmp_path)
    np.save(tmp_path / "valid_list.npy", np.zeros((3, 2), dtype=np.float64))
    with pytest.raises(DataFileError, match="expected integer ids; got dtype float64"):
        load_diffrec_split(tmp_path)
    np.save(tmp_path / "valid_list.npy", -np.ones((3, 2), dtype=np.int64))
    with pytest.raises(DataFileError, match="ids must be >= 0; found -1"):
        load_diffrec_split(tmp_path)


def test_recbole_reader_rejects_missing_columns(tmp_path: Path) -> None:
    bad = tmp_path / "x.inter"
    bad.write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataFileError, match=r"missing column\(s\)|unreadable"):
        read_recbole_inter(bad)
    with pytest.raises(DataFileError, match="no such file"):
        read_recbole_inter(tmp_path / "none.inter")


def test_movielens_split_written_and_read_back_in_diffrec_format(tmp_path: Path) -> None:
    if not ML100K.is_file():
        pytest.skip(f"ml-100k not found at {ML100K}")
    split = load_movielens_split(ML100K)
    # ratings >= 4 of ml-100k: 55,375 interactions (count of 4s and 5s in the file)
    cols = read_recbole_inter(ML100K)
    assert len(split.train) + len(split.valid) + len(split.test) == int(
        (cols["rating"] >= 4).sum())
    assert split.stats()["train"] / (len(cols["rating"][cols["rating"] >= 4])) == pytest.approx(
        0.7, abs=0.01)
    save_diffrec_split(split, tmp_path)
    back = load_diffrec_split(tmp_path)
    assert np.array_equal(back.test, split.test)
    assert back.n_items <= split.n_items and back.n_users <= split.n_users
    assert (back.matrix("train").multiply(back.matrix("test"))).nnz == 0  # disjoint parts


pairs = st.lists(st.tuples(st.integers(0, 50), st.integers(0, 200)), min_size=1, max_size=40)


@given(train=pairs, valid=pairs, test=pairs)
@settings(max_examples=40, deadline=None)
def test_diffrec_format_round_trips_any_pairs(tmp_path_factory, train, valid, test) -> None:
    arrays = [np.array(p, dtype=np.int64) for p in (train, valid, test)]
    everything = np.concatenate(arrays)
    split = InteractionSplit(int(everything[:, 0].max()) + 1, int(everything[:, 1].max()) + 1,
                             *arrays)
    directory = tmp_path_factory.mktemp("split")
    save_diffrec_split(split, directory)
    back = load_diffrec_split(directory)
    assert (back.n_users, back.n_items) == (split.n_users, split.n_items)
    for part in ("train", "valid", "test"):
        assert np.array_equal(getattr(back, part), getattr(split, part))
    assert back.matrix("train").nnz == len({tuple(p) for p in train})
