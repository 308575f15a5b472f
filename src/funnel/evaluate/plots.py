"""The report's matplotlib figures, each returned as PNG bytes (no pyplot global state)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def latency_histograms(timings: Sequence[Mapping[str, float]],
                       stages: Sequence[str] = ("recall", "rank", "rerank", "total")) -> bytes:
    """One histogram of per-request milliseconds per stage, with p50/p95 marked."""
    present = [s for s in stages if any(s in t for t in timings)] or list(stages[:1])
    fig = _figure(3.2 * len(present), 3.0)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, stage in zip(axes, present, strict=True):
        v = np.asarray([t[stage] for t in timings if stage in t], dtype=np.float64)
        if v.size:
            ax.hist(v, bins=30, color="#4c72b0")
            for q, style in ((50, "--"), (95, ":")):
                ax.axvline(np.percentile(v, q), color="black", linestyle=style,
                           label=f"p{q} {np.percentile(v, q):.1f} ms")
            ax.legend(fontsize=7)
        ax.set_title(stage)
        ax.set_xlabel("ms per request")
    axes[0].set_ylabel("requests")
    return _png(fig)


def variant_bars(figures: Mapping[str, float], variants: Sequence[str], kinds: Sequence[str],
                 metric: str) -> bytes:
    """Grouped bars of ``{variant}.{kind}.{metric}`` with their 95% intervals."""
    fig = _figure(7.0, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(variants))
    for j, variant in enumerate(variants):
        means = [figures.get(f"{variant}.{kind}.{metric}", np.nan) for kind in kinds]
        errs = [figures.get(f"{variant}.{kind}.{metric}.ci95", 0.0) for kind in kinds]
        errs = [0.0 if not np.isfinite(e) else e for e in errs]
        ax.bar(np.arange(len(kinds)) + j * width, means, width, yerr=errs, label=variant,
               capsize=2)
    ax.set_xticks(np.arange(len(kinds)) + 0.4 - width / 2)
    ax.set_xticklabels(kinds)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return _png(fig)


def _number(row: Mapping[str, object], key: str) -> float:
    value = row[key]
    if not isinstance(value, int | float):
        raise TypeError(f"importance row {row.get('name')!r}: {key!r} is not a number: {value!r}")
    return float(value)


def importance_bars(features: Sequence[Mapping[str, object]], title: str, k: int = 15) -> bytes:
    """Horizontal bars of the top ``k`` permutation importances (AUC drop) with their 95%
    intervals (``rank/importance.json`` rows), most important on top."""
    rows = list(features)[:k][::-1]
    drop = np.array([_number(r, "auc_drop") for r in rows])
    low = np.array([_number(r, "low") for r in rows])
    high = np.array([_number(r, "high") for r in rows])
    fig = _figure(6.5, 0.9 + 0.28 * max(1, len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(np.arange(len(rows)), drop, xerr=np.vstack([drop - low, high - drop]),
            color="#4c72b0", capsize=2)
    ax.set_yticks(np.arange(len(rows)))
    ax.set_yticklabels([str(r["name"]) for r in rows], fontsize=7)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("held-out AUC drop when shuffled (95% interval)")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def projection(vectors: np.ndarray, labels: Sequence[str | None], *, max_points: int = 3000,
               seed: int = 0, highlight: Mapping[int, str] | None = None
               ) -> tuple[bytes, np.ndarray]:
    """PNG of a 2-D PCA projection coloured by ``labels`` (top 10 + other), and the coordinates.

    PCA rather than t-SNE/UMAP: linear, deterministic and honest about distances.
    """
    v = np.asarray(vectors, dtype=np.float64)
    centred = v - v.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T  # (n, 2)
    rows = np.arange(len(v))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
    lab = np.array([str(x) if x is not None else "?" for x in labels], dtype=object)
    values, counts = np.unique(lab[rows], return_counts=True)
    top = [str(x) for x in values[np.argsort(-counts, kind="stable")][:10]]
    fig = _figure(6.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    other = rows[~np.isin(lab[rows], top)]
    if other.size:
        ax.scatter(xy[other, 0], xy[other, 1], s=4, c="lightgrey", label="other")
    for name in top:
        r = rows[lab[rows] == name]
        ax.scatter(xy[r, 0], xy[r, 1], s=5, label=name)
    for r, text in (highlight or {}).items():
        ax.scatter(xy[r, 0], xy[r, 1], s=60, marker="*", c="black")
        ax.annotate(text, (xy[r, 0], xy[r, 1]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("item embeddings, PCA")
    ax.legend(fontsize=6, markerscale=2, loc="best")
    return _png(fig), xy
