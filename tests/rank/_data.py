"""Synthetic CTR data with a planted pairwise interaction (the answer is known)."""

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


def impressions_workspace(root, *, events: int = 8_000, seed: int = 2):
    """A workspace holding a small synthetic marketplace's tables (items, users, events,
    truth), nothing built: what ``funnel train`` reads."""
    from funnel.data.store import EventStore
    from funnel.data.synthetic import MarketplaceConfig, generate_tables
    from funnel.workspace import Workspace

    tables = generate_tables(MarketplaceConfig(n_events=events, seed=seed))
    ws = Workspace.init(root)
    with EventStore.open(ws.store_path) as store:
        for kind in ("items", "users", "events", "truth"):
            store.insert(kind, tables[kind])
    return ws
