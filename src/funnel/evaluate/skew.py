"""Train/serve skew of the session-similarity features (KDD 2018 ``emb_*_sim``).

The ranker's training rows and the item embeddings are built from the same sessions, so for
a training impression the embedding has already seen the session's later co-clicks: the
features look more predictive in training than they can be on new sessions, and the ranker
learns to trust them too much. This measures it: the group AUC of each feature alone on the
last training-period requests (before the split) vs on held-out requests. A feature that
separates clicks in training but not after the split is memorization, not personalization.
When the rank stage trained on out-of-fold vectors (``[rank] oof_folds``), the training-period
figures are also given as the ranker saw them (``skew.train_as_trained.*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from funnel.evaluate.cases import Case, held_out_cases
from funnel.features.personalization import FEATURE_NAMES, personalization_features

TRAIN_WINDOW_FRACTION = 0.25
"""The training-period requests scored are those of this last share of the training span."""


def _feature_aucs(engine: Any, requests: Sequence[Case],
                  vectors_for: Any = None) -> dict[str, float]:
    from funnel.features.personalization import clip_state
    from funnel.rank.metrics import group_auc

    rank = engine.rank
    y: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    cols: dict[str, list[np.ndarray]] = {name: [] for name in FEATURE_NAMES}
    for g, case in enumerate(requests):
        ids = [i for i, _, _ in case.impressions]
        if not ids or not case.state.clicks:
            continue
        vectors = rank.vectors if vectors_for is None else vectors_for(case.user_id)
        feats = personalization_features(ids, clip_state(case.state, rank.recent_k), vectors,
                                         now_ms=case.ts_ms, profile=case.state)
        for name in FEATURE_NAMES:
            cols[name].append(feats[name])
        y.append(np.array([i in case.targets for i in ids], dtype=np.float64))
        groups.append(np.full(len(ids), g, dtype=np.int64))
    if not y:
        return {}
    yy, gg = np.concatenate(y), np.concatenate(groups)
    if yy.min() == yy.max():
        return {}
    out = {"requests": float(len(y))}
    for name in FEATURE_NAMES:
        values = np.concatenate(cols[name])
        if np.ptp(values) > 0:
            out[name] = group_auc(yy, values.astype(np.float64), gg)
    return out


def feature_skew_figures(engine: Any, con: duckdb.DuckDBPyConnection, split_ms: int,
                         held_requests: Sequence[Case], *, max_requests: int = 2000,
                         seed: int = 0) -> dict[str, float]:
    """``skew.{train|held_out}.{feature}.group_auc`` and their differences (train - held-out)
    for requests with a non-empty session history; empty without a ranker or vectors."""
    rank = getattr(engine, "rank", None)
    if rank is None or getattr(rank, "vectors", None) is None:
        return {}
    lo, = con.execute("SELECT epoch_ms(min(ts)) FROM events").fetchall()[0]
    if lo is None or lo >= split_ms:
        return {}
    start = int(split_ms - TRAIN_WINDOW_FRACTION * (split_ms - int(lo)))
    window = [c for c in held_out_cases(con, start).requests if c.ts_ms < split_ms]
    rng = np.random.default_rng(seed)

    def pick(rows: Sequence[Case]) -> list[Case]:
        if len(rows) <= max_requests:
            return list(rows)
        keep = np.sort(rng.choice(len(rows), max_requests, replace=False))
        return [rows[i] for i in keep]

    out: dict[str, float] = {}
    window = pick(window)
    train = _feature_aucs(engine, window)
    held = _feature_aucs(engine, pick(held_requests))
    # as the ranker was trained: with out-of-fold vectors when the rank stage used them
    from funnel.rank.oof_vectors import FoldVectors

    path = getattr(engine, "path", None)
    folds = None if path is None else FoldVectors.load(Path(path) / "rank" / "oof", rank.vectors)
    trained = {} if folds is None else _feature_aucs(engine, window, folds)
    for tag, figures in (("train", train), ("held_out", held), ("train_as_trained", trained)):
        for name, value in figures.items():
            suffix = "" if name == "requests" else ".group_auc"
            out[f"skew.{tag}.{name}{suffix}"] = value
    for name in FEATURE_NAMES:
        if name in train and name in held:
            out[f"skew.{name}.group_auc_drop"] = train[name] - held[name]
        if name in trained and name in held:
            out[f"skew.{name}.group_auc_drop_as_trained"] = trained[name] - held[name]
    return out
