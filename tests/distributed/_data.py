"""Synthetic CTR data with a planted pairwise interaction (a copy of tests/rank/_data.py:
test packages are not importable from one another)."""

from __future__ import annotations

import numpy as np

from funnel.rank.base import RankingData

SPECS = [
    {"type": "vocab", "name": "user_group"},
    {"type": "vocab", "name": "item_group"},
    {"type": "hash", "name": "noise", "bits": 6},
    {"type": "numeric", "name": "x"},
    {"type": "bucket", "name": "position", "n_buckets": 5},
]


def interaction_data(
    n: int, seed: int = 0, strength: float = 2.0
) -> tuple[RankingData, np.ndarray]:
    """Rows whose true logit has an FM-style term <u_user, v_item>; returns (data, true p)."""
    rng = np.random.default_rng(12345)  # the world (fixed); rows vary with ``seed``
    n_u, n_i, k = 30, 30, 2
    u = rng.normal(size=(n_u, k)) * np.sqrt(strength)
    v = rng.normal(size=(n_i, k)) * np.sqrt(strength)
    bu, bi = rng.normal(scale=0.3, size=n_u), rng.normal(scale=0.3, size=n_i)
    r = np.random.default_rng(seed)
    ug, ig = r.integers(0, n_u, n), r.integers(0, n_i, n)
    x = r.normal(size=n)
    pos = r.integers(1, 11, n)
    logit = -1.0 + bu[ug] + bi[ig] + 0.5 * x - 0.08 * pos + (u[ug] * v[ig]).sum(1)
    p = 1 / (1 + np.exp(-logit))
    y = (r.random(n) < p).astype(np.float32)
    cols = {
        "user_group": np.array([f"u{i}" for i in ug], dtype=object),
        "item_group": np.array([f"i{i}" for i in ig], dtype=object),
        "noise": np.array([f"z{i}" for i in r.integers(0, 40, n)], dtype=object),
        "x": x,
        "position": pos,
    }
    group = np.arange(n) // 20
    return RankingData(cols, y, group=group), p
