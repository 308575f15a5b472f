"""Shared fixtures of the recall tests: planted-cluster vectors and a tiny marketplace."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

torch.set_num_threads(1)
faiss.omp_set_num_threads(1)


def planted(n: int = 4000, d: int = 16, n_clusters: int = 40, noise: float = 0.35, seed: int = 0):
    """Vectors around random centres, ids, markets (4) and brands (5), and queries near centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d))
    label = rng.integers(0, n_clusters, n)
    x = (centres[label] + noise * rng.normal(size=(n, d))).astype(np.float32)
    ids = [f"item{i}" for i in range(n)]
    markets = [("paris", "tokyo", "rome", "lima")[i % 4] for i in range(n)]
    brands = [f"brand{i % 5}" for i in range(n)]
    q = (centres[rng.integers(0, n_clusters, 100)] + noise * rng.normal(size=(100, d)))
    return ids, x, {"market": markets, "brand": brands}, q.astype(np.float32)


@pytest.fixture(scope="module")
def clusters():
    return planted()


def recall_at(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean share of the exact top-k found by the approximate top-k."""
    hits = [
        len({i for i in a if i is not None} & {i for i in e if i is not None})
        / max(1, sum(i is not None for i in e))
        for a, e in zip(approx_ids, exact_ids, strict=True)
    ]
    return float(np.mean(hits))
