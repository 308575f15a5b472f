"""What recall knew about a candidate, as ranker features: each source's rank and score.

A click log carries no impressions, titles or searches, so what says most about the next click
is which session sources (co-visitation, last-item co-occurrence, sequential rules, session
kNN) put a candidate where in their lists. A ranker that sees those positions learns when to
trust which source (a learned fusion, instead of the merger's fixed reciprocal-rank weights),
so it can beat each of them alone. The same function computes the columns at training
(:mod:`funnel.rank.implicit`, over a merger fit on the past) and at serving (the engine, over
the request's merged candidates), so the two cannot drift apart.

Per source ``s``: ``rec_<s>_rank`` is ``1 / (1 + r)`` where ``r`` counts the merged
candidates ``s`` scored strictly higher (0 when ``s`` did not find it); ``rec_<s>_score`` is
the score over the best score ``s`` gave in this request (scale-free: sources fit on more data
count more). ``rec_sources`` counts the sources that found the candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RECALL_FEATURE_SOURCES = ("covisit", "cooc", "sr", "sknn", "popularity")
"""The sources whose ranks a click-trained ranker reads (all fit from the click log)."""


RRF_K = 60.0
"""The reciprocal-rank-fusion constant of ``rec_rrf`` (the merger's, Cormack et al. 2009)."""


def recall_feature_names(sources: Sequence[str]) -> list[str]:
    return [f"rec_{s}_{kind}" for s in sources for kind in ("rank", "score")] + [
        "rec_sources", "rec_rrf"]


def recall_feature_specs(sources: Sequence[str]) -> list[dict[str, Any]]:
    """Numeric feature specs (``funnel.features.specs``) for :func:`recall_feature_names`."""
    return [{"type": "numeric", "name": name} for name in recall_feature_names(sources)]


def source_scores(provenance: Any, name: str) -> np.ndarray:
    """``(n,)`` float64 scores of source ``name`` per merged candidate, NaN where absent."""
    if hasattr(provenance, "scores_of"):
        return np.asarray(provenance.scores_of(name), dtype=np.float64)
    return np.array([p.get(name, np.nan) for p in provenance], dtype=np.float64)


def recall_feature_columns(provenance: Any, sources: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``rec_*`` columns (float32) of every merged candidate, from the merger's
    provenance (:class:`funnel.recall.merger.Provenance` or a list of source -> score dicts).

    Computed over the whole merged list, before any filter cuts it: a rank is the candidate's
    place in its source's list, not in what is left of it.
    """
    n = len(provenance)
    out: dict[str, np.ndarray] = {}
    found_by = np.zeros(n, dtype=np.float32)
    rrf = np.zeros(n, dtype=np.float64)
    for name in sources:
        score = source_scores(provenance, name)
        found = ~np.isnan(score)
        vals = score[found]
        rank = np.zeros(n, dtype=np.float32)
        rel = np.zeros(n, dtype=np.float32)
        if len(vals):
            desc = -np.sort(-vals)
            higher = np.searchsorted(-desc, -vals, side="left")  # strictly higher scores
            rank[found] = 1.0 / (1.0 + higher)
            rrf[found] += 1.0 / (RRF_K + 1.0 + higher)
            best = float(desc[0])
            if best > 0:
                rel[found] = np.clip(vals / best, -1.0, 1.0)
        out[f"rec_{name}_rank"] = rank
        out[f"rec_{name}_score"] = rel
        found_by += found
    out["rec_sources"] = found_by
    out["rec_rrf"] = rrf.astype(np.float32)
    return out


__all__ = [
    "RECALL_FEATURE_SOURCES", "recall_feature_columns", "recall_feature_names",
    "recall_feature_specs", "source_scores",
]
