"""One contract every registered diversity re-ranker honours (STYLE P11), on random lists.

The learned ``listwise`` re-ranker has no diversity knob and need not lead with the best
pointwise item (that is its point); its own tests are ``test_listwise.py``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.rerank import ItemFeatures
from funnel.rerank.pipeline import RERANKERS, get_reranker


def _make(name: str, diversity: float, similarity: str):
    cls = get_reranker(name)
    if name == "none":
        return cls()
    return cls(diversity=diversity, similarity=similarity)


@st.composite
def lists(draw: st.DrawFn):
    n = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=n)  # continuous: no ties, so orders are well defined
    feats = ItemFeatures(vectors=rng.normal(size=(n, 5)), attributes={
        "category": rng.choice(list("abc"), n).tolist(),
        "brand": rng.choice(list("wxyz"), n).tolist()})
    k = draw(st.integers(1, 45))
    return [f"i{i}" for i in range(n)], scores, feats, k


DIVERSITY_RERANKERS = sorted(set(RERANKERS) - {"listwise"})


@pytest.mark.parametrize("name", DIVERSITY_RERANKERS)
@pytest.mark.parametrize("similarity", ["embedding", "attributes", "mixed"])
@settings(max_examples=25, deadline=None)
@given(case=lists(), diversity=st.sampled_from([0.0, 0.3, 0.8]))
def test_contract(name: str, similarity: str, case, diversity: float) -> None:
    ids, scores, feats, k = case
    r = _make(name, diversity, similarity)
    out_ids, out_scores = r.rerank(ids, scores, k=k, features=feats)
    # shape: min(k, n) distinct candidates, each with its own original score
    assert len(out_ids) == min(k, len(ids)) == len(set(out_ids.tolist()))
    pos = {item: i for i, item in enumerate(ids)}
    np.testing.assert_array_equal(out_scores, scores[[pos[i] for i in out_ids]])
    # the best item always leads (every method starts from the most relevant)
    assert out_ids[0] == ids[int(np.argmax(scores))]
    # deterministic, and stateless between calls
    again, _ = r.rerank(ids, scores, k=k, features=feats)
    assert again.tolist() == out_ids.tolist()
    # scale-free: an increasing affine map of the scores changes nothing
    affine, _ = r.rerank(ids, 3.0 * scores - 7.0, k=k, features=feats)
    assert affine.tolist() == out_ids.tolist()
    # order-free: shuffling the candidate list changes nothing
    perm = np.random.default_rng(0).permutation(len(ids))
    shuffled, _ = r.rerank([ids[i] for i in perm], scores[perm], k=k, features=feats.take(perm))
    assert shuffled.tolist() == out_ids.tolist()
    # diversity 0 is the ranker's order
    if diversity == 0.0:
        assert out_ids.tolist() == [ids[i] for i in np.argsort(-scores)[:k]]
