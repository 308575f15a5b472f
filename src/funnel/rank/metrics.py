"""Ranking and CTR metrics: AUC, group AUC, logloss, NDCG@k per request, calibration error."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _check(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores must have the same length; got {len(y)} and {len(p)}")
    if y.size == 0:
        raise ValueError("labels and scores are empty; expected at least one row")
    return y, p


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney U statistic (ties count one half)."""
    y, p = _check(y, p)
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    ranks = rankdata(p)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _groups(groups: np.ndarray, n: int) -> list[np.ndarray]:
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups must have one entry per row; got {len(groups)} for {n} rows")
    order = np.argsort(groups, kind="stable")
    _, starts = np.unique(groups[order], return_index=True)
    return np.split(order, starts[1:])


def group_auc(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """Impression-weighted mean AUC over groups (requests) that have both classes."""
    y, p = _check(y, p)
    total, weight = 0.0, 0
    for rows in _groups(groups, len(y)):
        yy = y[rows]
        if 0 < yy.sum() < len(yy) and (yy > 0.5).any() and (yy < 0.5).any():
            total += auc(yy, p[rows]) * len(rows)
            weight += len(rows)
    return total / weight if weight else float("nan")


def logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps]."""
    y, p = _check(y, p)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def ndcg_at_k(y: np.ndarray, p: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over groups with at least one relevant row; gain 2^rel - 1, ties by order."""
    y, p = _check(y, p)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for rows in _groups(groups, len(y)):
        rel = y[rows]
        if rel.max() <= 0:
            continue
        ranked = rel[np.argsort(-p[rows], kind="stable")][:k]
        ideal = np.sort(rel)[::-1][:k]
        dcg = ((2**ranked - 1) * discounts[: len(ranked)]).sum()
        idcg = ((2**ideal - 1) * discounts[: len(ideal)]).sum()
        scores.append(dcg / idcg)
    return float(np.mean(scores)) if scores else float("nan")


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width probability bins."""
    y, p = _check(y, p)
    bins = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    return float(np.abs(sum_p - sum_y).sum() / len(y))


def evaluate(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray | None = None, k: int = 10
) -> dict[str, float]:
    """All metrics at once (group metrics only when ``groups`` is given)."""
    out = {"auc": auc(y, p), "logloss": logloss(y, p), "ece": ece(y, p)}
    if groups is not None:
        out["group_auc"] = group_auc(y, p, groups)
        out[f"ndcg@{k}"] = ndcg_at_k(y, p, groups, k)
    return out


def one_positive_hr_mrr(scores: np.ndarray, label: np.ndarray, groups: np.ndarray, k: int = 20
                 ) -> tuple[float, float]:
    """(HR@k, MRR@k) over groups holding one positive each: the positive's rank is the count of
    candidates scored above it plus half of those tied with it."""
    _, g = np.unique(groups, return_inverse=True)
    pos = label > 0.5
    best = np.full(g.max() + 1 if len(g) else 0, np.nan)
    best[g[pos]] = scores[pos]
    above = np.bincount(g, weights=(scores > best[g]) & ~pos, minlength=len(best))
    tied = np.bincount(g, weights=(scores == best[g]) & ~pos, minlength=len(best))
    rank = above + tied / 2.0 + 1.0
    hit = rank <= k
    return float(hit.mean()), float(np.where(hit, 1.0 / rank, 0.0).mean())


def one_positive_group_auc(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> float:
    """:func:`group_auc` for groups holding one positive each (a click and
    its sampled negatives), vectorized: 75k groups of 5 take milliseconds, not 20 s."""
    y = np.asarray(y) > 0.5
    p = np.asarray(p, dtype=np.float64)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    n_pos = np.bincount(g, weights=y.astype(np.float64))
    size = np.bincount(g)
    if (n_pos > 1).any():
        return group_auc(y, p, np.asarray(groups))
    pos = np.full(len(size), np.nan)
    pos[g[y]] = p[y]
    neg = ~y
    win = (p[neg] < pos[g[neg]]) + 0.5 * (p[neg] == pos[g[neg]])
    per = np.bincount(g[neg], weights=win, minlength=len(size))
    n_neg = size - n_pos
    ok = (n_pos == 1) & (n_neg > 0)
    if not ok.any():
        return float("nan")
    return float(((per[ok] / n_neg[ok]) * size[ok]).sum() / size[ok].sum())
