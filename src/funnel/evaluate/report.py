"""Render an evaluation: ``report.json`` (every figure) and one self-contained ``report.html``
(Jinja2 template, matplotlib PNGs embedded as base64 data URIs: no file or network fetches)."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from funnel.evaluate.cases import KINDS
from funnel.evaluate.replay import OPTIONAL_VARIANTS, VARIANTS

TEMPLATE = "report.html.j2"
N_NEIGHBOUR_EXAMPLES = 5


def build_images(engine: Any, result: Any, preds: dict[str, np.ndarray] | None,
                 curve: list[dict[str, Any]], cfg: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every plot of the report as PNG bytes, plus the nearest-neighbour examples."""
    from funnel.evaluate import plots

    images: dict[str, bytes] = {}
    details: dict[str, Any] = {}
    from funnel.evaluate.replay import quality_figures

    q = quality_figures(result, cfg.k)
    images["quality"] = plots.variant_bars(q, tuple(result.scores), KINDS, f"ndcg@{cfg.k}")
    if result.timings:
        images["latency"] = plots.latency_histograms(result.timings)
    if preds is not None and preds["y"].size and preds["y"].min() != preds["y"].max():
        from funnel.rank.calibration import reliability_plot

        curves = {"funnel ranker": (preds["p"], preds["y"]),
                  "without session state": (preds["p_no_state"], preds["y"])}
        if not np.isnan(preds["p_true"]).any():
            curves["true p_click (Bayes)"] = (preds["p_true"], preds["y"])
        images["calibration"] = reliability_plot(curves, title="held-out impressions")
    importance = _importance(getattr(engine, "path", None))
    if importance is not None:
        model, features = importance
        images["importance"] = plots.importance_bars(
            features, title=f"{model}: feature importance on the build's test slice")
    if curve:
        from funnel.rerank.curve import CurvePoint, plot_tradeoff

        images["tradeoff"] = plot_tradeoff([CurvePoint(**p) for p in curve],
                                           title="diversity trade-off (held-out lists)")
    if engine.item_vectors is not None and len(engine.item_vectors.ids) >= 3:
        png, examples = _embedding_section(engine, cfg.seed)
        images["embeddings"] = png
        details["neighbours"] = examples
    return images, details


def _importance(artifact: Path | None) -> tuple[str, list[dict[str, Any]]] | None:
    """(serving model, its importance rows) from the artifact's ``rank/importance.json``."""
    path = None if artifact is None else Path(artifact) / "rank" / "importance.json"
    if path is None or not path.exists():
        return None
    raw = json.loads(path.read_text())
    model = raw.get("serve_model")
    features = raw.get("models", {}).get(model, {}).get("features", [])
    return (str(model), features) if features else None


def _embedding_section(engine: Any, seed: int) -> tuple[bytes, list[dict[str, Any]]]:
    from funnel.evaluate.plots import projection

    table = engine.item_vectors
    ids = [str(i) for i in table.ids]
    vecs = np.asarray(table.vectors, dtype=np.float32)
    attrs = engine.catalog.attributes(ids)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(ids), min(N_NEIGHBOUR_EXAMPLES, len(ids)), replace=False))
    unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    examples = []
    for n, r in enumerate(picks.tolist()):
        sims = unit @ unit[r]
        sims[r] = -np.inf
        top = np.argsort(-sims, kind="stable")[:5]
        examples.append({
            "label": f"#{n + 1}", "item_id": ids[r], "title": _s(attrs["title"][r]),
            "category": _s(attrs["category"][r]), "market": _s(attrs["market"][r]),
            "neighbours": [{"item_id": ids[j], "title": _s(attrs["title"][j]),
                            "category": _s(attrs["category"][j]),
                            "market": _s(attrs["market"][j]), "cosine": float(sims[j])}
                           for j in top.tolist()],
        })
    png, _ = projection(vecs, list(attrs["category"]), seed=seed,
                        highlight={int(r): f"#{n + 1}" for n, r in enumerate(picks.tolist())})
    return png, examples


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value.is_integer() and abs(value) >= 10:
            return f"{value:,.0f}"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def _tables(figures: dict[str, float], k: int) -> dict[str, Any]:
    """Rows for the template, read from the flat figures so HTML and JSON cannot disagree."""
    def f(key: str) -> str:
        return _fmt(figures[key]) if key in figures else "n/a"

    kinds = [kind for kind in KINDS if f"funnel.{kind}.n" in figures]
    variants = [*VARIANTS, *(v for v in OPTIONAL_VARIANTS
                             if any(f"{v}.{kind}.n" in figures for kind in KINDS))]
    quality = [{"variant": v, "cells": [
        {"kind": kind, "ndcg": f(f"{v}.{kind}.ndcg@{k}"), "ci": f(f"{v}.{kind}.ndcg@{k}.ci95"),
         "mrr": f(f"{v}.{kind}.mrr@{k}"), "hit": f(f"{v}.{kind}.hit@{k}")} for kind in kinds]}
        for v in variants]
    margins = [{"base": base, "kind": kind, "gain": f(f"gain.funnel_vs_{base}.{kind}.ndcg@{k}"),
                "ci": f(f"gain.funnel_vs_{base}.{kind}.ndcg@{k}.ci95"),
                "relative": f(f"gain.funnel_vs_{base}.{kind}.ndcg@{k}.relative"),
                "changed": f(f"gain.funnel_vs_{base}.{kind}.ndcg@{k}.changed")}
               for base in variants if base != "funnel" for kind in kinds]
    ranker = [{"model": label, "auc": f(f"{p}.auc"), "group_auc": f(f"{p}.group_auc"),
               "logloss": f(f"{p}.logloss"), "ece": f(f"{p}.ece")}
              for label, p in (("served ranker", "rank"),
                               ("served ranker, anonymous", "rank.no_personalization"),
                               ("Bayes-optimal (true p_click)", "bayes"))
              if f"{p}.auc" in figures]
    recall_rows: dict[tuple[str, str], dict[str, str]] = {}
    for key in figures:
        if key.startswith("recall.") and ".recall@" in key and not key.endswith(".ci95"):
            _, source, target, metric = key.split(".", 3)
            gain = source.endswith("_gain")  # a paired difference: shown with its interval
            n = f(f"recall.{source.removesuffix('_gain') if gain else source}.{target}.n")
            recall_rows.setdefault((source, target), {"source": source, "target": target,
                                                      "n": n})
            recall_rows[(source, target)][metric] = (f"{f(key)} ± {f(key + '.ci95')}" if gain
                                                     else f(key))
    ks = sorted({int(key.rsplit("@", 1)[1]) for key in figures
                 if key.startswith("recall.") and ".recall@" in key
                 and not key.endswith(".ci95")})
    from funnel.features.personalization import FEATURE_NAMES

    skew = [{"feature": name, "train": f(f"skew.train.{name}.group_auc"),
             "held_out": f(f"skew.held_out.{name}.group_auc"),
             "drop": f(f"skew.{name}.group_auc_drop")}
            for name in FEATURE_NAMES if f"skew.{name}.group_auc_drop" in figures]
    diversity = [{"variant": v, "ild": f(f"{v}.ild@{k}"),
                  "entropy": f(f"{v}.brand_entropy@{k}"),
                  "categories": f(f"{v}.distinct_categories@{k}"),
                  "coverage": f(f"{v}.catalog_coverage"),
                  "tied": f(f"{v}.tied_adjacent_scores@{k}")} for v in variants]
    stages = sorted({key[len("latency."):].rsplit(".", 1)[0] for key in figures
                     if key.startswith("latency.")})
    latency = [{"stage": s, "p50": f(f"latency.{s}.p50_ms"), "p95": f(f"latency.{s}.p95_ms"),
                "p99": f(f"latency.{s}.p99_ms"), "mean": f(f"latency.{s}.mean_ms")}
               for s in stages]
    context = [{"order": o, "clicks": f(f"rerank.context.{o}.clicks"),
                "ndcg": f(f"rerank.context.{o}.ndcg"),
                "entropy": f(f"rerank.context.{o}.brand_entropy")}
               for o in ("pointwise", "dpp", "listwise", "truth", "oracle")
               if f"rerank.context.{o}.clicks" in figures]
    return {"kinds": kinds, "quality": quality, "margins": margins, "ranker": ranker,
            "context": context,
            "recall": sorted(recall_rows.values(), key=lambda r: (r["target"], r["source"])),
            "recall_ks": ks, "diversity": diversity, "skew": skew, "latency": latency, "f": f}


def render_html(result: Any, *, title: str, k: int = 10) -> str:
    """The self-contained HTML page of ``result``."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("funnel.evaluate", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    images = {name: "data:image/png;base64," + base64.b64encode(png).decode("ascii")
              for name, png in result.images.items()}
    return env.get_template(TEMPLATE).render(
        title=title, k=k, notes=result.notes, not_applicable=result.not_applicable,
        images=images, neighbours=result.details.get("neighbours", []),
        **_tables(result.figures, k))


def write_report(result: Any, out_dir: Path, *, title: str, k: int = 10) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "figures": {key: (None if isinstance(v, float) and math.isnan(v) else v)
                    for key, v in sorted(result.figures.items())},
        "notes": result.notes, "not_applicable": result.not_applicable,
        "neighbours": result.details.get("neighbours", []),
        "curve": result.details.get("curve", []), "cases": result.details.get("cases", []),
    }
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(payload, indent=1, sort_keys=True, allow_nan=False))
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(result, title=title, k=k))
    result.json_path, result.html_path = json_path, html_path
    return json_path, html_path
