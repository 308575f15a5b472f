"""The relevance/diversity trade-off curve over the diversity knob, and its plot.

For each method and knob value, every list is re-ranked and scored: NDCG@k against the
ranker's own scores (how much of the ranker's order survives), NDCG@k against true gains
when known (the synthetic marketplace's p_click), intra-list distance, category coverage and
brand entropy. The evaluation report embeds :func:`plot_tradeoff` as a PNG.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import duckdb
import numpy as np

from funnel.rerank.base import ItemFeatures, normalize_relevance
from funnel.rerank.catalog import ItemCatalog
from funnel.rerank.dpp import DPPReranker
from funnel.rerank.metrics import coverage, entropy, intra_list_distance, ndcg_at_k
from funnel.rerank.mmr import MMRReranker
from funnel.rerank.similarity import attribute_factor

DEFAULT_KNOBS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# the re-rankers with a diversity knob ("none", the ranker's own order, is every curve's knob 0)
DIVERSITY_METHODS: dict[str, type[DPPReranker] | type[MMRReranker]] = {
    "dpp": DPPReranker,
    "mmr": MMRReranker,
}


@dataclass(frozen=True)
class RankedList:
    """One ranker output to re-rank: ids, scores, features, optional true gains (>= 0)."""

    item_ids: Sequence[str]
    scores: np.ndarray
    features: ItemFeatures
    gains: np.ndarray | None = None


@dataclass(frozen=True)
class CurvePoint:
    """Mean metrics over all lists for one (method, diversity) setting."""

    method: str
    diversity: float
    ndcg: float
    ndcg_true: float
    ild: float
    category_coverage: float
    brand_entropy: float
    ms_per_list: float

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def _ild(features: ItemFeatures, attrs: Sequence[str]) -> float:
    if features.vectors is not None:
        return intra_list_distance(np.asarray(features.vectors))
    n = len(next(iter(features.attributes.values()), []))
    if n < 2:
        return 0.0
    B = attribute_factor(dict(features.attributes),
                         [a for a in attrs if a in features.attributes], n)
    S = B @ B.T  # attribute agreement share; distance = 1 - S
    return float((n * (n - 1) - (S.sum() - np.trace(S))) / (n * (n - 1)))


def tradeoff_curve(lists: Sequence[RankedList], *, methods: Sequence[str] = ("dpp", "mmr"),
                   knobs: Sequence[float] = DEFAULT_KNOBS, k: int = 10,
                   similarity: str = "auto",
                   attributes: tuple[str, ...] = ("category", "brand")) -> list[CurvePoint]:
    """Mean list metrics for every ``method`` x ``knob`` (diversity) on ``lists``."""
    if not lists:
        raise ValueError("tradeoff_curve: 'lists' is empty; need at least one ranked list")
    unknown = [m for m in methods if m not in DIVERSITY_METHODS]
    if unknown:
        raise ValueError(f"tradeoff_curve: unknown diversity method(s) {unknown}; valid names "
                         f"are {', '.join(DIVERSITY_METHODS)}")
    points: list[CurvePoint] = []
    for method in methods:
        cls = DIVERSITY_METHODS[method]
        for knob in knobs:
            reranker = cls(diversity=float(knob), similarity=similarity, attributes=attributes)
            reranker.fit()
            rows: list[tuple[float, float, float, float, float]] = []
            elapsed = 0.0
            for lst in lists:
                t = time.perf_counter()
                perm = reranker.order(np.asarray(lst.scores, dtype=float), lst.features, k)
                elapsed += time.perf_counter() - t
                shown = perm[: min(k, len(perm))]
                rel = normalize_relevance(lst.scores)
                f = lst.features.take(shown)
                true = (ndcg_at_k(lst.gains[shown], lst.gains, k) if lst.gains is not None
                        else float("nan"))
                rows.append((
                    ndcg_at_k(rel[shown], rel, k), true, _ild(f, attributes),
                    coverage(f.attributes.get("category", []),
                             lst.features.attributes.get("category")),
                    entropy(f.attributes.get("brand", [])),
                ))
            m = np.array(rows, dtype=float)
            means = np.nanmean(m, axis=0) if not np.isnan(m[:, 1]).all() else _mean_keep_nan(m)
            ndcg, ndcg_true, ild, category_coverage, brand_entropy = map(float, means)
            points.append(CurvePoint(method, float(knob), ndcg, ndcg_true, ild,
                                     category_coverage, brand_entropy,
                                     ms_per_list=1e3 * elapsed / len(lists)))
    return points


def _mean_keep_nan(m: np.ndarray) -> np.ndarray:
    out = np.nanmean(np.where(np.isnan(m), 0.0, m), axis=0)
    out[1] = np.nan
    return out


def plot_tradeoff(points: Sequence[CurvePoint], *, title: str = "re-rank trade-off") -> bytes:
    """PNG bytes: NDCG@k vs intra-list distance per method, and coverage/entropy vs knob."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax3 = ax2.twinx()
    for method in dict.fromkeys(p.method for p in points):
        pts = [p for p in points if p.method == method]
        ax1.plot([p.ild for p in pts], [p.ndcg for p in pts], marker="o", label=method)
        for p in pts:
            ax1.annotate(f"{p.diversity:g}", (p.ild, p.ndcg), fontsize=7,
                         textcoords="offset points", xytext=(3, 3))
        ax2.plot([p.diversity for p in pts], [p.category_coverage for p in pts], marker="o",
                 label=f"{method} category coverage")
        ax3.plot([p.diversity for p in pts], [p.brand_entropy for p in pts], marker="s",
                 linestyle="--", label=f"{method} brand entropy")
    ax1.set_xlabel("intra-list distance")
    ax1.set_ylabel("NDCG@k vs ranker order")
    ax1.set_title(title)
    ax1.legend()
    ax2.set_xlabel("diversity knob")
    ax2.set_ylabel("category coverage (solid)")
    ax3.set_ylabel("brand entropy, bits (dashed)")
    ax2.legend(loc="upper left", fontsize=7)
    ax3.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def logged_lists(con: duckdb.DuckDBPyConnection, catalog: ItemCatalog, *, limit: int = 500,
                 min_len: int = 5) -> list[RankedList]:
    """Logged impression lists (one per request, in shown order) from an event store.

    The logged position is the production ranker's order (score = -position); true gains are
    the ``truth`` table's p_click when that table exists (synthetic data).
    """
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables"
                                        ).fetchall()}
    has_truth = "truth" in tables
    gain = "t.p_click" if has_truth else "NULL"
    join = "LEFT JOIN truth t USING (event_id)" if has_truth else ""
    rows = con.execute(f"""
        WITH imp AS (
            SELECT e.request_id, e.item_id, e.position, {gain} AS gain
            FROM events e {join}
            WHERE e.event_type = 'impression' AND e.request_id IS NOT NULL
              AND e.item_id IS NOT NULL AND e.position IS NOT NULL
        ), req AS (
            SELECT request_id FROM imp GROUP BY request_id
            HAVING count(DISTINCT item_id) = count(*) AND count(*) >= ?
            ORDER BY request_id LIMIT ?
        )
        SELECT imp.request_id, list(imp.item_id ORDER BY imp.position),
               list(imp.position ORDER BY imp.position), list(imp.gain ORDER BY imp.position)
        FROM imp JOIN req USING (request_id) GROUP BY imp.request_id ORDER BY imp.request_id
    """, [min_len, limit]).fetchall()  # noqa: S608 - no user input in the SQL text
    out: list[RankedList] = []
    for _, ids, positions, gains in rows:
        g = None if not has_truth or any(x is None for x in gains) else np.array(gains, float)
        out.append(RankedList(list(ids), -np.array(positions, dtype=float),
                              catalog.features(ids), g))
    return out
