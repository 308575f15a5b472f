"""MMR: hand-computed selections and the relevance/diversity extremes."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.rerank import ItemFeatures, MMRReranker, RelevanceReranker, mmr_greedy
from funnel.rerank.mmr import mmr_greedy_lowrank
from funnel.rerank.similarity import attribute_factor, embedding_factor

S3 = np.array([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_hand_computed_selection() -> None:
    # lambda = .5, r = (1, .9, .5). Step 1 (no penalty): scores .5, .45, .25 -> item 0.
    # Step 2: item 1: .45 - .5 * .9 = 0; item 2: .25 - 0 = .25 -> item 2, then item 1.
    assert mmr_greedy(np.array([1.0, 0.9, 0.5]), S3, 3, lam=0.5).tolist() == [0, 2, 1]
    # lambda = .9: item 1 scores .81 - .09 = .72 > .45 -> relevance order survives
    assert mmr_greedy(np.array([1.0, 0.9, 0.5]), S3, 3, lam=0.9).tolist() == [0, 1, 2]


def test_lowrank_equals_dense() -> None:
    rng = np.random.default_rng(1)
    V = rng.normal(size=(30, 5))
    B = embedding_factor(V)
    r = rng.uniform(size=30)
    for lam in (0.2, 0.5, 0.8):
        assert (mmr_greedy(r, B @ B.T, 12, lam=lam).tolist()
                == mmr_greedy_lowrank(r, B, 12, lam=lam).tolist())


def test_similarity_factors_by_hand() -> None:
    B = embedding_factor(np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
    np.testing.assert_allclose(B @ B.T, [[1, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]], atol=1e-12)
    A = attribute_factor({"brand": ["a", "a", None], "category": ["x", "y", "y"]},
                         ["brand", "category"], 3)
    # agree on brand only (0,1); on category only (1,2); unknown brand matches nothing
    np.testing.assert_allclose(A @ A.T, [[1, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]], atol=1e-12)


def test_attribute_mmr_spreads_brands() -> None:
    ids = ["a1", "a2", "a3", "b1", "c1"]
    f = ItemFeatures(attributes={"brand": ["a", "a", "a", "b", "c"]})
    out, scores = MMRReranker(diversity=0.6, similarity="attributes",
                              attributes=("brand",)).rerank(ids, [1, 0.95, 0.9, 0.5, 0.4],
                                                            k=3, features=f)
    assert out.tolist() == ["a1", "b1", "c1"]
    np.testing.assert_array_equal(scores, [1, 0.5, 0.4])


def test_zero_diversity_and_identity_keep_order() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=20)
    ids = [f"i{i}" for i in range(20)]
    f = ItemFeatures(vectors=rng.normal(size=(20, 4)))
    want = np.array(ids, dtype=object)[np.argsort(-s, kind="stable")][:7].tolist()
    assert MMRReranker(diversity=0.0).rerank(ids, s, k=7, features=f)[0].tolist() == want
    assert RelevanceReranker().rerank(ids, s, k=7)[0].tolist() == want


def test_bad_diversity() -> None:
    with pytest.raises(ValueError, match=r"'diversity' parameter must be a float in \[0, 1\]"):
        MMRReranker(diversity=-0.1).fit()
