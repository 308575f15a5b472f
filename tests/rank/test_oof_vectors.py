"""Out-of-fold item vectors: a training row's session features never come from vectors that
saw that user's sessions."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from funnel.features.personalization import ItemVectorLookup
from funnel.rank.oof_vectors import FoldVectors, out_of_fold_vectors, user_fold


def test_user_fold_is_stable_and_in_range() -> None:
    folds = [user_fold(f"u{k}", 3) for k in range(300)]
    assert folds == [user_fold(f"u{k}", 3) for k in range(300)]
    assert set(folds) == {0, 1, 2}
    assert 70 < folds.count(0) < 130  # a hash, not one fold for everyone
    assert user_fold(None, 3) == 0


def _store(users: list[str]) -> duckdb.DuckDBPyConnection:
    """Sessions where items x0..x3 are clicked only by ``users[0]`` and a..f by the others."""
    rows = []
    for k, user in enumerate(users):
        items = ["x0", "x1", "x2", "x3"] if k == 0 else ["a", "b", "c", "d", "e", "f"]
        for s in range(5):
            rows.append({"session_id": f"{user}-{s}", "user_id": user, "start_ts": k * 10 + s,
                         "items": items[s % 2:] + items[: s % 2], "market": "m"})
    con = duckdb.connect()
    sessions = pa.Table.from_pylist(rows)  # noqa: F841 - read by DuckDB's replacement scan
    con.execute("CREATE TABLE sessions AS SELECT * FROM sessions")
    con.execute("CREATE TABLE items (item_id VARCHAR, market VARCHAR, category VARCHAR, "
                "brand VARCHAR, price DOUBLE)")
    return con


def test_a_users_rows_get_vectors_that_never_saw_their_sessions(tmp_path) -> None:
    users = [f"u{k}" for k in range(40)]
    other = next(u for u in users if user_fold(u, 2) != user_fold(users[0], 2))
    con = _store(users)
    (tmp_path / "config.json").write_text(json.dumps(
        {"config": {"dim": 4, "epochs": 1, "n_threads": 1, "cold_start": False}}))
    ids = ["x0", "x1", "x2", "x3", "a", "b", "c", "d", "e", "f"]
    full = ItemVectorLookup(ids, np.random.default_rng(0).normal(size=(10, 4)),
                            item_brand={"a": "brand-a"})
    vectors_for = out_of_fold_vectors(con, full, tmp_path, folds=2)
    assert vectors_for is not None
    own = vectors_for(users[0])
    assert not set(own.ids) & {"x0", "x1", "x2", "x3"}  # only users[0] clicked them
    assert {"a", "b", "c"} <= set(own.ids)
    assert {"x0", "x1", "x2", "x3"} <= set(vectors_for(other).ids)  # trained on users[0]
    assert own.item_brand == {"a": "brand-a"}  # everything but the vectors is the full one
    np.testing.assert_allclose(np.linalg.norm(own.vectors, axis=1), 1.0, atol=1e-5)
    # saved beside the ranker and read back exactly (the evaluation's skew table uses them)
    vectors_for.save(tmp_path / "oof")
    again = FoldVectors.load(tmp_path / "oof", full)
    assert again is not None and len(again.lookups) == 2
    for user in (users[0], other):
        assert again(user).ids == vectors_for(user).ids
        np.testing.assert_allclose(again(user).vectors, vectors_for(user).vectors, atol=1e-6)
    assert again(users[0]).item_brand == {"a": "brand-a"}
    assert FoldVectors.load(tmp_path / "nothing", full) is None


def test_folds_are_validated(tmp_path) -> None:
    full = ItemVectorLookup(["a"], np.ones((1, 2)))
    with pytest.raises(ValueError, match="folds: expected an int >= 2, got 1"):
        out_of_fold_vectors(_store(["u0", "u1"]), full, tmp_path, folds=1)
