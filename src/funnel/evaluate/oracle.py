"""The personalization ceiling on synthetic data: what knowing a user's true taste is worth.

The generator's click model (``funnel.data.synthetic``) is
``p_click = position^-EXAM_POWER * sigmoid(logit)`` where ``logit`` holds a *personal* term,
``ATTR_PERSONAL * <user's personal direction, item's latent vector>``, that only
personalization can learn. Regenerating the latent state from the workspace's generator config
gives that term for every (user, item), so the evaluation can say how much of the possible
gain the funnel's personalization gets: the group AUC of the true probability with and without
the personal term on the ranker's held-out rows is the Bayes ceiling of personalization, to
set beside the served ranker's own gain (with vs without the user's id and state).

With list context on (``--context-strength`` > 0, ``funnel.data.synthetic.context``) an
impression's ``p_click`` also carries what the list above it did; the truth table's
``p_attract`` (the context-free ``sigmoid(logit)``) then gives each impression's own factor
``p_click / p_attract`` in place of the position bias, taken as fixed (the list above an item
depends on other items' personal terms too, a second-order effect ignored here).

That ceiling knows the user's direction exactly, which no model of the logs can. The *history
bound* (:func:`history_terms`, scored in :func:`impression_ceiling`) is what the logs themselves
allow: before each held-out request, the Bayes posterior mean of the user's direction given
every earlier impression of that user (clicked or not), with the generator's true item vectors
and true non-personal probabilities (one Newton step from the Gaussian prior the generator draws
directions from). A ranker that learned the item geometry perfectly could reach it; the share of
it the served ranker captures says how much of the *learnable* gain is left on the table. On
150k events with ~16 clicks per user it was 41% of the ceiling, and 59% with five times the
history per user.

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

import duckdb
import numpy as np
import pyarrow as pa

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
        from funnel.data.synthetic._world import IDIO_SCALE

        state = latent_state(config)
        self.weight = float(ATTR_PERSONAL)
        self.exam_power = float(EXAM_POWER)
        self.prior_sd = float(IDIO_SCALE) / np.sqrt(float(config.latent_dim))
        """Per-coordinate sd of the personal direction the generator draws for each user."""
        self.items = {str(i): r for r, i in enumerate(state["item_ids"].tolist())}
        self.users = {str(u): r for r, u in enumerate(state["user_ids"].tolist())}
        self.item_vectors = np.asarray(state["item_vectors"], dtype=np.float64)
        self.user_personal = np.asarray(state["user_personal"], dtype=np.float64)

    def vectors_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """True item vectors, rows of zeros for unknown ids."""
        rows = np.array([self.items.get(i, -1) for i in item_ids], dtype=np.int64)
        out = self.item_vectors[np.maximum(rows, 0)].copy()
        out[rows < 0] = 0.0
        return out

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
                       requests: Sequence[Any],
                       con: duckdb.DuckDBPyConnection | None = None) -> dict[str, float]:
    """Group AUC of the true p_click with and without the personal term, on the ranker's
    held-out rows (``ranker_predictions`` output, built from the same ``requests``); with the
    store ``con``, also the history bound: without the personal term plus its estimate from
    the user's earlier impressions (:func:`history_terms`)."""
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
    if con is not None and has_attraction(con):
        attract = true_attraction(con, [str(c.request_id) for c in requests
                                        if c.request_id is not None])
        a = np.array([attract.get(str(case.request_id), {}).get(str(i), np.nan)
                      for case in requests for i, _, _ in case.impressions])
        exam = _list_factor(truth, a, exam)
    base = _logit(np.clip(truth / exam, 1e-9, 1 - 1e-9)) - personal
    full = group_auc(y, truth, group)
    none = group_auc(y, exam * _sigmoid(base), group)
    out = {"oracle.bayes.group_auc": full, "oracle.no_personal.group_auc": none,
           "oracle.personal_gain.group_auc": full - none}
    if con is not None:
        estimated = history_terms(con, terms, requests)
        guess = np.array([estimated.get((str(case.request_id), int(q)), 0.0)
                          for case in requests for _, q, _ in case.impressions])
        out["oracle.history_bound.group_auc"] = (
            group_auc(y, exam * _sigmoid(base + guess), group) - none)
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def has_attraction(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the truth table carries ``p_attract`` (generators since list context)."""
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'truth' "
        "AND column_name = 'p_attract'").fetchall()[0][0])


def true_attraction(con: duckdb.DuckDBPyConnection, request_ids: Sequence[str]
                    ) -> dict[str, dict[str, float]]:
    """``request -> item -> p_attract`` (the context-free attraction, which does not depend on
    the position) for the impressions of ``request_ids``."""
    rows = con.execute("""
        SELECT e.request_id, e.item_id, t.p_attract
        FROM events e JOIN truth t USING (event_id)
        WHERE e.event_type = 'impression' AND t.p_attract IS NOT NULL
          AND e.request_id IN (SELECT unnest(?::VARCHAR[]))
    """, [list(request_ids)]).fetchall()
    out: dict[str, dict[str, float]] = {}
    for request, item, p in rows:
        out.setdefault(str(request), {})[str(item)] = float(p)
    return out


def _list_factor(p_click: np.ndarray, p_attract: np.ndarray, exam: np.ndarray) -> np.ndarray:
    """``p_click / p_attract`` where the attraction is known (the impression's position and
    list-context factor), else the position bias ``exam``."""
    known = np.isfinite(p_attract) & (p_attract > 0)
    return np.where(known, p_click / np.where(known, p_attract, 1.0), exam)


_HISTORY_SQL = """
SELECT i.user_id, i.request_id, i.item_id, i.position, t.p_click, {attract} AS p_attract,
       c.item_id IS NOT NULL AS clicked
FROM events i JOIN truth t USING (event_id)
LEFT JOIN (SELECT DISTINCT request_id, item_id FROM events
           WHERE event_type = 'click' AND request_id IS NOT NULL) c
       ON c.request_id = i.request_id AND c.item_id = i.item_id
WHERE i.event_type = 'impression' AND i.request_id IS NOT NULL AND t.p_click IS NOT NULL
  AND i.user_id IN (SELECT user_id FROM wanted_users)
ORDER BY i.user_id, i.ts, i.request_id, i.position
"""


def history_terms(con: duckdb.DuckDBPyConnection, terms: PersonalTerms,
                  requests: Sequence[Any]) -> dict[tuple[str, int], float]:
    """The posterior-mean personal term of each held-out impression, keyed by (request id,
    position): the user's direction estimated from that user's earlier impressions only.

    Per user, in time order, a Gaussian prior N(0, (weight * prior_sd)^2 I) on
    ``weight * direction`` is updated by every impression with one Newton step at the prior
    mean: with the true non-personal probability ``p0 = exam * sigmoid(z0)`` and its slope
    ``g = exam * s (1 - s)``, precision ``+= g^2 / (p0 (1 - p0)) x x^T`` and
    ``b += g (y - p0) / (p0 (1 - p0)) x``; a request's terms are read before its own update.
    """
    wanted = {str(c.request_id) for c in requests if c.request_id is not None}
    if not wanted:
        return {}
    users = sorted({str(c.user_id) for c in requests if str(c.request_id) in wanted})
    con.register("wanted_users", _users_table(users))
    try:
        attract = "t.p_attract" if has_attraction(con) else "CAST(NULL AS DOUBLE)"
        rows = con.execute(_HISTORY_SQL.format(attract=attract)).fetchnumpy()
    finally:
        con.unregister("wanted_users")
    user, req = rows["user_id"], rows["request_id"]
    n = len(user)
    if n == 0:
        return {}
    x = terms.vectors_of([str(i) for i in rows["item_id"]])
    distinct, row_user = np.unique(user, return_inverse=True)
    directions = np.array([terms.user_personal[terms.users[str(u)]] if str(u) in terms.users
                           else np.zeros(x.shape[1]) for u in distinct])
    personal = terms.weight * np.einsum("ij,ij->i", x, directions[row_user])
    exam = np.maximum(rows["position"].astype(np.float64), 1.0) ** -terms.exam_power
    p = np.asarray(rows["p_click"], dtype=np.float64)
    attraction = np.ma.filled(np.ma.asarray(rows["p_attract"], dtype=np.float64), np.nan)
    exam = _list_factor(p, attraction, exam)
    s0 = _sigmoid(_logit(np.clip(p / exam, 1e-9, 1 - 1e-9)) - personal)
    p0 = np.clip(exam * s0, 1e-9, 1 - 1e-9)
    slope = exam * s0 * (1.0 - s0)
    w_info = slope ** 2 / (p0 * (1.0 - p0))
    w_resid = slope * (rows["clicked"].astype(np.float64) - p0) / (p0 * (1.0 - p0))
    prior_precision = 1.0 / (terms.weight * terms.prior_sd) ** 2
    d = x.shape[1]
    out: dict[tuple[str, int], float] = {}
    starts = np.flatnonzero(np.r_[True, (req[1:] != req[:-1]) | (user[1:] != user[:-1])])
    ends = np.r_[starts[1:], n]
    precision, b = np.eye(d) * prior_precision, np.zeros(d)
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if s == 0 or user[s] != user[s - 1]:
            precision, b = np.eye(d) * prior_precision, np.zeros(d)
        xs = x[s:e]
        if str(req[s]) in wanted:
            est = xs @ np.linalg.solve(precision, b)
            for j, pos in enumerate(rows["position"][s:e].tolist()):
                out[(str(req[s]), int(pos))] = float(est[j])
        precision = precision + (xs * w_info[s:e, None]).T @ xs
        b = b + xs.T @ w_resid[s:e]
    return out


def _users_table(users: list[str]) -> pa.Table:
    return pa.table({"user_id": pa.array(users, pa.string())})
