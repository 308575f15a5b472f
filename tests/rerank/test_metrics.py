"""Diversity metrics and NDCG against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.rerank.metrics import coverage, entropy, intra_list_distance, ndcg_at_k


def test_intra_list_distance_by_hand() -> None:
    # pairs: (e1, e2) cos 0 -> 1; (e1, -e1) cos -1 -> 2; (e2, -e1) cos 0 -> 1; mean 4/3
    v = np.array([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    assert intra_list_distance(v) == pytest.approx(4 / 3)
    assert intra_list_distance(v[:1]) == 0.0


def test_coverage_and_entropy_by_hand() -> None:
    assert coverage(["a", "a", "b"], pool=["a", "b", "c", "d"]) == pytest.approx(2 / 3)
    assert coverage(["a", "b"], pool=["a", "b", "c"]) == 1.0
    assert coverage(["a", "a", "a"], pool=["a", "a", "b"]) == 0.5  # best possible is 2
    assert entropy(["x", "x", "y", "y"]) == pytest.approx(1.0)
    assert entropy(["x", "y", "z", "w"]) == pytest.approx(2.0)
    assert entropy(["x", "x", None]) == 0.0


def test_ndcg_by_hand() -> None:
    # shown gains (1, 3), pool best (3, 1): (1 + 3/log2 3) / (3 + 1/log2 3)
    want = (1 + 3 / np.log2(3)) / (3 + 1 / np.log2(3))
    assert ndcg_at_k([1, 3], [3, 1, 0], 2) == pytest.approx(want)
    assert ndcg_at_k([3, 1], [1, 3], 2) == 1.0
    with pytest.raises(ValueError, match="gains must be >= 0"):
        ndcg_at_k([-1.0], [1.0], 1)
