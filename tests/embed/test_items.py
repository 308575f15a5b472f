"""ItemEmbeddings / QueryEmbeddings estimator contract: API, errors, persistence, cold start."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from funnel.embed import ItemEmbeddings, QueryEmbeddings
from funnel.exceptions import ArtifactError, NotFittedError

FAST = {"dim": 8, "epochs": 2}


@pytest.fixture(scope="module")
def fitted(small_sim: tuple[pa.Table, pa.Table]) -> ItemEmbeddings:
    sessions, items = small_sim
    return ItemEmbeddings(**FAST).fit(sessions, items)


def test_init_only_stores_parameters() -> None:
    e = ItemEmbeddings(dim=-3, window=0)  # validated in fit, not here (sklearn convention)
    assert e.get_params()["dim"] == -3
    assert not any(k.endswith("_") for k in vars(e))


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [("dim", 0, "positive int"), ("window", 1.5, "positive int"), ("sample", 1.0, "[0, 1)"),
     ("booked_context", 1, "a bool"), ("negatives", -1, ">= 0")],
)
def test_bad_hyperparameters_are_named_in_the_error(param: str, value: object, expected: str,
                                                    small_sim) -> None:
    with pytest.raises(ValueError, match=rf"'{param}' parameter must be .*{re.escape(expected)}"):
        ItemEmbeddings(**{param: value}).fit(small_sim[0])


def test_queries_before_fit_raise_not_fitted() -> None:
    with pytest.raises(NotFittedError, match="call 'fit'"):
        ItemEmbeddings().vector("x")
    with pytest.raises(NotFittedError):
        ItemEmbeddings().most_similar("x")


def test_fit_returns_self_with_unit_vectors(fitted: ItemEmbeddings) -> None:
    assert fitted.vectors_.shape == (len(fitted.vocab_), 8)
    assert np.allclose(np.linalg.norm(fitted.vectors_, axis=1), 1.0, atol=1e-5)
    assert fitted.vocab_[0] in fitted and "nope" not in fitted


def test_unknown_item_is_a_key_error_naming_it(fitted: ItemEmbeddings) -> None:
    with pytest.raises(KeyError, match="'ghost' is not in the vocabulary"):
        fitted.vector("ghost")


def test_most_similar_excludes_itself_sorts_and_filters_market(fitted: ItemEmbeddings) -> None:
    item = fitted.vocab_[0]
    res = fitted.most_similar(item, k=5)
    assert len(res) == 5 and item not in [r[0] for r in res]
    sims = [s for _, s in res]
    assert sims == sorted(sims, reverse=True)
    expected = float(fitted.vector(item) @ fitted.vector(res[0][0]))
    assert res[0][1] == pytest.approx(expected, abs=1e-6)
    in_m2 = fitted.most_similar(item, k=10, market="m2")
    assert all(t.startswith("m2-") for t, _ in in_m2)
    by_vector = fitted.most_similar(fitted.vector(item), k=6)
    assert by_vector[0][0] == item and by_vector[1:] == res  # vector query keeps the item


def test_most_similar_clamps_k_and_rejects_bad_arguments(fitted: ItemEmbeddings) -> None:
    assert len(fitted.most_similar(fitted.vocab_[0], k=10**6)) == len(fitted.vocab_) - 1
    with pytest.raises(ValueError, match="'k' parameter"):
        fitted.most_similar(fitted.vocab_[0], k=0)
    with pytest.raises(ValueError, match="known market; got 'mars'"):
        fitted.most_similar(fitted.vocab_[0], market="mars")
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        fitted.most_similar(np.zeros(3))


def test_neighbours_share_market_and_category(small_sim) -> None:
    fitted = ItemEmbeddings(dim=16, epochs=15).fit(*small_sim)
    same_market = same_cat = 0
    probes = fitted.vocab_[:50]
    for item in probes:
        top = fitted.most_similar(item, k=5)
        same_market += sum(t.split("-")[0] == item.split("-")[0] for t, _ in top)
        same_cat += sum(t.split("-")[:2] == item.split("-")[:2] for t, _ in top)
    # measured 0.996 and 0.984; chance is 1/3 and 1/15
    assert same_market / (5 * len(probes)) > 0.9
    assert same_cat / (5 * len(probes)) > 0.8


def test_save_load_round_trip_is_exact(fitted: ItemEmbeddings, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    back = ItemEmbeddings.load(tmp_path)
    assert back.vocab_ == fitted.vocab_ and back.get_params() == fitted.get_params()
    assert np.array_equal(back.vectors_, fitted.vectors_)
    assert back.most_similar(fitted.vocab_[3], 7, market="m1") == fitted.most_similar(
        fitted.vocab_[3], 7, market="m1")
    assert np.array_equal(back.cold_start(market="m0", price=80.0, category="c1"),
                          fitted.cold_start(market="m0", price=80.0, category="c1"))
    # no pickle anywhere: every file is .npy (loadable without pickle) or JSON
    for f in tmp_path.iterdir():
        assert f.suffix in {".npy", ".json"}


def test_load_refuses_missing_or_foreign_files(fitted: ItemEmbeddings, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="item_meta.json: missing"):
        ItemEmbeddings.load(tmp_path)
    fitted.save(tmp_path)
    (tmp_path / "query_meta.json").write_text((tmp_path / "item_meta.json").read_text())
    with pytest.raises(ArtifactError, match="not QueryEmbeddings"):
        QueryEmbeddings.load(tmp_path)


def test_same_seed_single_thread_fit_is_identical(small_sim) -> None:
    sessions, items = small_sim
    a = ItemEmbeddings(**FAST, seed=5).fit(sessions, items)
    b = ItemEmbeddings(**FAST, seed=5).fit(sessions, items)
    assert np.array_equal(a.vectors_, b.vectors_)


def test_cold_start_is_the_mean_of_the_three_nearest_priced_items_of_its_cell() -> None:
    sessions = [["a", "b", "c", "d", "e"], ["e", "d", "c", "b", "a"], ["a", "c", "e"]] * 5
    items = pa.table({
        "item_id": ["a", "b", "c", "d", "e"],
        "market": ["m", "m", "m", "m", "n"],
        "category": ["x", "x", "x", "x", "x"],
        "price": [100.0, 110.0, 400.0, 95.0, 100.0],
    })
    e = ItemEmbeddings(dim=4, epochs=1, min_dwell_ms=0).fit(sessions, items)
    got = e.cold_start(market="m", category="x", price=102.0)
    mean = (e.vector("a") + e.vector("b") + e.vector("d")) / 3  # c too dear, e other market
    assert np.allclose(got, mean / np.linalg.norm(mean), atol=1e-6)
    with pytest.raises(KeyError, match="no known item in market 'z'"):
        e.cold_start(market="z")


def test_query_embeddings_group_queries_of_one_category() -> None:
    from funnel.embed.simulate import SessionSimConfig, simulate_sessions

    sessions, _ = simulate_sessions(SessionSimConfig(n_sessions=3000, n_markets=2, seed=4))
    q = QueryEmbeddings(dim=16, epochs=10).fit(sessions)
    assert "C1   Q0" in q  # normalized lookups
    hits = total = 0
    for query in q.vocab_:
        for other, _ in q.most_similar(query, k=3):
            hits += other.split()[0] == query.split()[0]
            total += 1
    assert hits / total > 0.6  # chance: 3 of 19 other queries share the category


def test_batch_vectors_equal_single_vectors(fitted: ItemEmbeddings) -> None:
    tokens = fitted.vocab_[:4]
    assert np.array_equal(fitted.vectors(tokens), np.stack([fitted.vector(t) for t in tokens]))
    assert fitted.vectors([]).shape == (0, 8)
    with pytest.raises(TypeError, match="use vector"):
        fitted.vectors("a")


def test_items_table_without_market_is_rejected(small_sim) -> None:
    with pytest.raises(ValueError, match=r"'item_id' and 'market' columns .* got \['item_id'\]"):
        ItemEmbeddings(**FAST).fit(small_sim[0], pa.table({"item_id": ["x"]}))


def test_fill_cold_start_adds_unseen_catalog_items_searchably(small_sim, tmp_path: Path) -> None:
    sessions, items = small_sim
    e = ItemEmbeddings(**FAST).fit(sessions, items)
    extra = pa.table({"item_id": ["new-1", "new-2", e.vocab_[0]],
                      "market": ["m1", "nowhere", "m0"], "category": ["c2", "c0", "c0"],
                      "price": [60.0, 10.0, 1.0]})
    n_before = len(e.vocab_)
    added = e.fill_cold_start(extra)
    assert added == ["new-1"]  # unknown market skipped, known item untouched
    assert len(e.vocab_) == n_before + 1 and e.counts_[-1] == 0
    expected = e.cold_start(market="m1", category="c2", price=60.0)
    assert np.allclose(e.vector("new-1"), expected, atol=1e-6)
    assert all(t.startswith("m1-") for t, _ in e.most_similar("new-1", k=3))
    e.save(tmp_path)
    assert ItemEmbeddings.load(tmp_path).most_similar("new-1", 3) == e.most_similar("new-1", 3)
