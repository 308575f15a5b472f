"""What ``funnel build`` prints when it is done: one line per stage a person can act on.

A build's metrics are ~100 figures (every model's AUC and ECE, every source's build time); the
terminal gets one headline per stage (its size or its quality figure, and its seconds), the
skips with their reasons, and the next command. ``--details`` prints every figure; ``--json``
writes them all. The rank stage's feature importance (top 3 of the serving model) ends its
headline; ``--details`` shows each model's top 10 in a table of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Metrics = Mapping[str, Any]


def _n(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) else str(value)


def _catalog(m: Metrics) -> str:
    line = f"{_n(m.get('items', 0))} items, {_n(m.get('markets', 0))} markets"
    if m.get("derived_from_events"):
        line += f" ({_n(m['derived_from_events'])} known only from events)"
    return line


def _embeddings(m: Metrics) -> str:
    parts = [f"{_n(m.get('items', 0))} item vectors"]
    if m.get("queries"):
        parts.append(f"{_n(m['queries'])} query vectors")
    if m.get("types"):
        parts.append(f"{_n(m['types'])} types")
    return ", ".join(parts)


RECALL_SIZES = (("vector_items", "vector"), ("lexical_build_s", "lexical"),
                ("covisit_items", "covisit"), ("popularity_markets", "popularity"),
                ("session_sequences", "cooc/sr/sknn"))


def _recall(m: Metrics) -> str:
    built = [name for key, name in RECALL_SIZES if m.get(key)]
    return f"{_n(m.get('items', 0))} items; sources: {', '.join(built) or 'none'}"


def _rank(m: Metrics) -> str:
    models = sorted({k.split(".")[0] for k in m if k.endswith(".auc")
                     and k.split(".")[0] not in ("bayes", "baseline")})
    aucs = ", ".join(f"{name} {m[name + '.auc']:.3f}" for name in models)
    line = f"held-out AUC {aucs}" if aucs else "no model"
    if "bayes.auc" in m:
        line += f" (Bayes-optimal {m['bayes.auc']:.3f})"
    if m.get("trained_on"):
        line += "; trained on clicks"
    if m.get("serving.order") == "fused":
        line += "; serves the fused recall order"
    if m.get("importance.top"):
        line += f"; top features {m['importance.top']}"
    return line


def importance_rows(m: Metrics, k: int = 10) -> list[tuple[str, str, float, float]]:
    """``(model, feature, AUC drop, 95% half-width)``: each model's top ``k`` by held-out
    permutation importance, read from the rank stage's flat ``<model>.importance.<feature>``."""
    rows: dict[str, list[tuple[str, str, float, float]]] = {}
    for key, value in m.items():
        model, sep, feature = key.partition(".importance.")
        if not sep or feature.endswith(".ci95") or feature == "base_auc":
            continue
        rows.setdefault(model, []).append(
            (model, feature, float(value), float(m.get(f"{key}.ci95", float("nan")))))
    return [r for model in sorted(rows)
            for r in sorted(rows[model], key=lambda r: -r[2])[:k]]


def is_importance(key: str) -> bool:
    """A figure :func:`importance_rows` shows in its own table (not in the list of figures)."""
    return ".importance." in key


def _rerank(m: Metrics) -> str:
    if "ndcg@10_kept" not in m:
        return f"{_n(m.get('items', 0))} items"
    return (f"NDCG@10 kept {m['ndcg@10_kept']:.3f}, category coverage "
            f"{m.get('category_coverage_gain', 0.0):+.3f}")


def _suggest(m: Metrics) -> str:
    line = f"{_n(m.get('n_queries', 0))} queries"
    if "mrr_ours" in m:
        line += f"; MRR {m['mrr_ours']:.3f} (most-popular completion {m.get('mrr_mpc', 0):.3f})"
    return line


def _generative(m: Metrics) -> str:
    shown = [f"{k} {v:.3g}" for k, v in m.items() if isinstance(v, float) and k != "seconds"]
    return ", ".join(shown[:3])


HEADLINES: dict[str, Callable[[Metrics], str]] = {
    "catalog": _catalog, "embeddings": _embeddings, "recall": _recall, "rank": _rank,
    "rerank": _rerank, "suggest": _suggest, "generative": _generative,
}


def headline(stage: str, metrics: Metrics) -> str:
    """The one line a stage's figures come down to (``"skipped"`` when it did not run)."""
    if "skipped" in metrics:
        return "skipped (see below)"
    make = HEADLINES.get(stage)
    return make(metrics) if make is not None else ""


def summary_rows(results: Mapping[str, Metrics]) -> list[tuple[str, str, str]]:
    """``(stage, seconds, headline)`` per stage, in build order."""
    rows = []
    for stage, metrics in results.items():
        seconds = metrics.get("seconds")
        shown = f"{seconds:.1f} s" if isinstance(seconds, int | float) else ""
        rows.append((stage, shown, headline(stage, metrics)))
    return rows


__all__ = ["HEADLINES", "headline", "importance_rows", "is_importance", "summary_rows"]
