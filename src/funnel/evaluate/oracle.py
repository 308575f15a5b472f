"""The personalization ceiling on synthetic data: what knowing a user's true taste is worth.

The generator's click model (``funnel.data.synthetic``) is
``p_click = position^-EXAM_POWER * sigmoid(logit)`` where ``logit`` holds a *personal* term,
``ATTR_PERSONAL * <user's personal direction, item's latent vector>``, that only
personalization can learn. Regenerating the latent state from the workspace's generator config
gives that term for every (user, item), so the evaluation can say how much of the possible
gain the funnel's personalization gets: the group AUC of the true probability with and without
the personal term on the ranker's held-out rows is the Bayes ceiling of personalization, to
set beside the served ranker's own gain (with vs without the user's id and state).

A list-level ceiling (the anonymous ranking re-scored with ``logit(score) + personal term``)
was tried and dropped: the served scores are calibrated on logged, mostly on-category
impressions, so their logit spread is far narrower than the true one and adding the full
personal term reorders across categories (search NDCG@10 fell 0.28 -> 0.18 on 150k events).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funnel.workspace import Workspace


def generator_config(ws: Workspace) -> Any | None:
    """The ``MarketplaceConfig`` the workspace's events were generated with, or None.

    ``funnel generate`` writes ``summary.json`` (with the config) next to the raw tables; the
    ceiling is computed only when exactly one generation is in the workspace, so the latent
    state cannot belong to other events.
    """
    from funnel.data.synthetic import MarketplaceConfig

    found = sorted(Path(ws.raw_dir).glob("*/summary.json"))
    if len(found) != 1:
        return None
    record = json.loads(found[0].read_text())
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return None
    return MarketplaceConfig(**record["config"])


class PersonalTerms:
    """The generator's personal logit term for (user, item) pairs; 0 for unknown ids."""

    def __init__(self, config: Any) -> None:
        from funnel.data.synthetic import latent_state
        from funnel.data.synthetic._simulate import ATTR_PERSONAL, EXAM_POWER

        state = latent_state(config)
        self.weight = float(ATTR_PERSONAL)
        self.exam_power = float(EXAM_POWER)
        self.items = {str(i): r for r, i in enumerate(state["item_ids"].tolist())}
        self.users = {str(u): r for r, u in enumerate(state["user_ids"].tolist())}
        self.item_vectors = np.asarray(state["item_vectors"], dtype=np.float64)
        self.user_personal = np.asarray(state["user_personal"], dtype=np.float64)

    def __call__(self, user_id: str, item_ids: Sequence[str]) -> np.ndarray:
        u = self.users.get(user_id)
        out = np.zeros(len(item_ids), dtype=np.float64)
        if u is None:
            return out
        rows = np.array([self.items.get(i, -1) for i in item_ids], dtype=np.int64)
        known = rows >= 0
        out[known] = self.weight * (self.item_vectors[rows[known]] @ self.user_personal[u])
        return out


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(q / (1 - q))


def impression_ceiling(terms: PersonalTerms, preds: dict[str, np.ndarray],
                       requests: Sequence[Any]) -> dict[str, float]:
    """Group AUC of the true p_click with and without the personal term, on the ranker's
    held-out rows (``ranker_predictions`` output, built from the same ``requests``)."""
    from funnel.rank.metrics import group_auc

    truth = preds["p_true"]
    y, group = preds["y"], preds["group"]
    if truth.size == 0 or np.isnan(truth).any() or y.min() == y.max():
        return {}
    pers, pos = [], []
    for case in requests:
        ids = [i for i, _, _ in case.impressions]
        pers.append(terms(case.user_id, ids))
        pos.append(np.array([max(int(q), 1) for _, q, _ in case.impressions], dtype=np.float64))
    personal, position = np.concatenate(pers), np.concatenate(pos)
    exam = position ** -terms.exam_power
    attract = np.clip(truth / exam, 1e-9, 1 - 1e-9)
    without = exam / (1.0 + np.exp(-(_logit(attract) - personal)))
    full = group_auc(y, truth, group)
    none = group_auc(y, without, group)
    return {"oracle.bayes.group_auc": full, "oracle.no_personal.group_auc": none,
            "oracle.personal_gain.group_auc": full - none}
