"""VectorIndex against its exact oracle (STYLE P5), filters, updates, persistence, errors."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.exceptions import ArtifactError, NotFittedError
from funnel.recall.vector_index import ExactIndex, VectorIndex

from .conftest import planted, recall_at


@pytest.fixture(scope="module")
def built(clusters):
    """The exact oracle and an HNSW index over the same planted clusters (read-only use)."""
    ids, x, attrs, _ = clusters
    return ExactIndex().fit(ids, x, attrs), VectorIndex(kind="hnsw").fit(ids, x, attrs)


@pytest.mark.parametrize("kind, threshold", [("flat", 1.0), ("hnsw", 0.95)])
def test_recall_against_exact_before_and_after_round_trip(
    clusters, built, tmp_path, kind, threshold
):
    ids, x, attrs, q = clusters
    exact = built[0]
    ann = built[1] if kind == "hnsw" else VectorIndex(kind=kind).fit(ids, x, attrs)
    truth = exact.search(q, 10).ids
    assert recall_at(ann.search(q, 10).ids, truth) >= threshold
    ann.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert recall_at(loaded.search(q, 10).ids, truth) >= threshold
    np.testing.assert_array_equal(loaded.search(q, 10).ids, ann.search(q, 10).ids)


@pytest.mark.slow
def test_ivfpq_recall_is_reasonable():
    ids, x, attrs, q = planted(n=2000, d=16, n_clusters=20)
    exact = ExactIndex().fit(ids, x)
    ivf = VectorIndex(kind="ivfpq", nlist=8, nprobe=4, pq_m=8).fit(ids, x)
    # PQ codes are lossy (8 bytes for 16 floats); recall@10 well above chance (10/2000)
    assert recall_at(ivf.search(q, 10).ids, exact.search(q, 10).ids) >= 0.5


@pytest.mark.parametrize(
    "filters", [{"market": "tokyo"}, {"brand": "brand3"}, {"market": "rome", "brand": "brand1"}]
)
def test_filtered_search_matches_exact_and_only_returns_matches(clusters, built, filters):
    ids, x, attrs, q = clusters
    exact, ann = built
    got = ann.search(q, 10, filters=filters)
    assert recall_at(got.ids, exact.search(q, 10, filters=filters).ids) >= 0.95
    row = {item: i for i, item in enumerate(ids)}
    for item in got.ids.ravel():
        for name, value in filters.items():
            assert attrs[name][row[item]] == value


def test_exact_index_hand_computed_cosine_and_ip():
    ids, x = ["a", "b", "c"], np.array([[1, 0], [3, 3], [0, 2]], np.float32)
    cos = ExactIndex().fit(ids, x).search([1.0, 0.2], k=3)
    assert cos.ids.tolist() == ["a", "b", "c"]
    qn = np.hypot(1, 0.2)
    np.testing.assert_allclose(cos.scores, [1 / qn, 1.2 / qn / np.sqrt(2), 0.2 / qn], rtol=1e-5)
    ip = ExactIndex(metric="ip").fit(ids, x).search([1.0, 0.2], k=2)
    assert ip.ids.tolist() == ["b", "a"]
    np.testing.assert_allclose(ip.scores, [3.6, 1.0], rtol=1e-6)


def test_flat_vector_index_equals_exact_with_ip(clusters):
    ids, x, _, q = clusters
    exact = ExactIndex(metric="ip").fit(ids, x).search(q, 5)
    flat = VectorIndex(kind="flat", metric="ip").fit(ids, x).search(q, 5)
    np.testing.assert_array_equal(flat.ids, exact.ids)
    np.testing.assert_allclose(flat.scores, exact.scores, rtol=1e-4)


def test_batch_equals_single_queries(clusters, built):
    ids, x, attrs, q = clusters
    ann = built[1]
    batch = ann.search(q[:5], 7, filters={"market": "paris"})
    for i in range(5):
        single = ann.search(q[i], 7, filters={"market": "paris"})
        assert single.ids.tolist() == batch.ids[i].tolist()
        np.testing.assert_allclose(single.scores, batch.scores[i], rtol=1e-6)


def test_add_and_remove_incrementally(clusters):
    ids, x, attrs, q = clusters
    half = len(ids) // 2
    first = {k: v[:half] for k, v in attrs.items()}
    ann = VectorIndex(kind="hnsw").fit(ids[:half], x[:half], first)
    ann.add(ids[half:], x[half:], {k: v[half:] for k, v in attrs.items()})
    exact = ExactIndex().fit(ids, x, attrs)
    assert len(ann) == len(ids)
    assert recall_at(ann.search(q, 10).ids, exact.search(q, 10).ids) >= 0.95
    assert recall_at(
        ann.search(q, 10, filters={"market": "lima"}).ids,
        exact.search(q, 10, filters={"market": "lima"}).ids,
    ) >= 0.95
    gone = list(ann.search(q[0], 5).ids)
    assert ann.remove(gone + ["not-an-id"]) == 5
    exact.remove(gone)
    after = ann.search(q[0], 10)
    assert not set(gone) & set(after.ids.tolist())
    assert recall_at(ann.search(q, 10).ids, exact.search(q, 10).ids) >= 0.95
    assert len(ann) == len(ids) - 5 and gone[0] not in ann


def test_readding_an_id_replaces_its_vector():
    ann = VectorIndex(kind="flat").fit(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], {"market": ["x", "x"]})
    ann.add(["a"], [[0.0, -1.0]], {"market": ["y"]})
    res = ann.search([0.6, 0.8], k=2)  # old a would score 0.6, new a scores -0.8
    assert res.ids.tolist() == ["b", "a"]
    np.testing.assert_allclose(res.scores, [0.8, -0.8], rtol=1e-6)
    assert ann.search([0.0, -1.0], k=1, filters={"market": "y"}).ids.tolist() == ["a"]
    assert ann.search([1.0, 0.0], k=5, filters={"market": "x"}).ids.tolist() == ["b"]


def test_auto_kind_by_size_and_unknown_market_is_empty():
    ids, x, attrs, q = planted(n=1200, d=8)
    assert VectorIndex().fit(ids, x).kind_ == "flat"
    assert VectorIndex(flat_max=100).fit(ids, x).kind_ == "hnsw"
    assert VectorIndex(flat_max=100, ivfpq_min=1000, pq_m=4, nlist=8).fit(ids, x).kind_ == "ivfpq"
    with pytest.raises(ValueError, match="needs at least 1000 vectors to train; got 500"):
        VectorIndex(kind="ivfpq").fit(ids[:500], x[:500])
    res = VectorIndex().fit(ids, x, attrs).search(q[:2], 3, filters={"market": "nowhere"})
    assert res.ids.shape == (2, 3) and all(v is None for v in res.ids.ravel())
    assert np.isneginf(res.scores).all()


def test_k_larger_than_catalog_is_clamped():
    res = VectorIndex().fit(["a", "b"], [[1.0, 0.0], [0.0, 1.0]]).search([1.0, 0.0], k=50)
    assert res.ids.tolist() == ["a", "b"]


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        VectorIndex().search([1.0], k=1)
    with pytest.raises(ValueError, match="'kind' parameter must be one of"):
        VectorIndex(kind="annoy").fit(["a"], [[1.0]])
    idx = VectorIndex().fit(["a", "b"], [[1.0, 0.0], [0.0, 1.0]], {"market": ["x", "y"]})
    with pytest.raises(ValueError, match=r"shape \(d,\) or \(n, d\) with d=2; got shape \(3,\)"):
        idx.search([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="unknown filter attribute 'colour'"):
        idx.search([1.0, 0.0], filters={"colour": "red"})
    with pytest.raises(ValueError, match="'k' parameter must be a positive int. Got 0"):
        idx.search([1.0, 0.0], k=0)
    with pytest.raises(ValueError, match="finite"):
        idx.add(["c"], [[np.nan, 0.0]], {"market": ["x"]})
    with pytest.raises(ValueError, match="unique"):
        VectorIndex().fit(["a", "a"], [[1.0], [2.0]])
    with pytest.raises(TypeError, match="sequence of str"):
        idx.remove("a")
    with pytest.raises(ArtifactError, match="config.json: missing"):
        VectorIndex.load(tmp_path)


def test_save_replaces_atomically(tmp_path, clusters, built):
    ids, x, attrs, q = clusters
    target = tmp_path / "vec"
    VectorIndex(kind="flat").fit(ids[:10], x[:10]).save(target)
    built[1].save(target)
    assert VectorIndex.load(target).kind_ == "hnsw"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vec"]  # no temp dirs left behind
