"""Write the re-rank component of an artifact build, and read it back for serving.

``<artifact>/rerank/`` holds ``config.json`` (the resolved ``[rerank]`` table),
``item_attributes.parquet`` (brand, seller, category, market, price band per item),
``listwise/`` (the learned listwise model, when ``[rerank] method`` or ``search_method`` is
"listwise": trained on the logged lists the ranker scored without fitting them,
``rank/heldout_scores.parquet``), and the
trade-off curve measured on the store's logged impression lists (``curve.json``,
``tradeoff.png``) for the evaluation report. Item vectors are not copied: serving reads them
from ``<artifact>/embeddings/`` when that component exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from funnel.artifacts import ArtifactBuild
from funnel.rerank.catalog import ItemCatalog
from funnel.rerank.curve import DEFAULT_KNOBS, logged_lists, plot_tradeoff, tradeoff_curve
from funnel.rerank.listwise import ListwiseReranker, LoggedList
from funnel.rerank.pipeline import RerankConfig, RerankPipeline
from funnel.vectors import VectorTable, load_vectors
from funnel.workspace import Workspace

COMPONENT = "rerank"
DIVERSITY_SKIP = (
    "no logged impression lists to measure what diversity costs; set [rerank] method "
    "(e.g. 'dpp') to enable it"
)
"""Why a browse feed built from a click log keeps the ranker's order (``skipped.diversity``):
on MovieLens-100K as next-item sequences the default DPP (diversity 0.3) cut the served
list's HR@20 from 0.39 to 0.23 (636 -> 377 hits of 1,625 held-out cases)."""
LISTWISE_SKIP = (
    "no scored impression lists (rank/heldout_scores.parquet): the listwise model learns from "
    "logged lists with clicks; a log with impressions enables it"
)
CURVE_FILE = "curve.json"
PLOT_FILE = "tradeoff.png"


def _item_vectors(artifact: Path) -> VectorTable | None:
    directory = artifact / "embeddings"
    if not (directory / "item_vectors.npy").exists():
        return None
    return load_vectors(directory, "item")


def scored_lists(con: Any, catalog: ItemCatalog, scores: Path, max_lists: int
                 ) -> list[LoggedList]:
    """The most recent ``max_lists`` logged impression lists the ranker scored without
    training on them (``rank/heldout_scores.parquet``), in display order, with their clicks
    and the catalog's features of each item (what the pipeline gives the model at serving)."""
    rows = con.execute("""
        WITH s AS (SELECT * FROM read_parquet(?)),
        shown AS (
            SELECT e.request_id, max(e.ts) AS ts, list(e.item_id ORDER BY e.position) AS items,
                   list(s.score ORDER BY e.position) AS scores,
                   list(s.click ORDER BY e.position) AS clicks
            FROM s JOIN events e USING (event_id)
            WHERE e.position IS NOT NULL AND e.item_id IS NOT NULL
            GROUP BY e.request_id
            HAVING count(*) >= 2 AND count(DISTINCT e.item_id) = count(*)
        )
        SELECT items, scores, clicks FROM shown ORDER BY ts DESC, request_id LIMIT ?
    """, [str(scores), max_lists]).fetchall()
    out: list[LoggedList] = []
    for items, values, clicks in reversed(rows):  # oldest first
        feats = catalog.features(items)
        out.append(LoggedList(scores=np.asarray(values, dtype=np.float64),
                              attributes=feats.attributes, vectors=feats.vectors,
                              clicked=np.asarray(clicks, dtype=bool)))
    return out


def _train_listwise(workspace: Workspace, artifact: Path, catalog: ItemCatalog,
                    config: RerankConfig) -> tuple[ListwiseReranker | None, dict[str, Any]]:
    from funnel.rank.build import HELDOUT_SCORES

    path = artifact / "rank" / HELDOUT_SCORES
    if not path.exists():
        return None, {"skipped.listwise": LISTWISE_SKIP}
    con = workspace.connect(read_only=True)
    try:
        lists = scored_lists(con, catalog, path, config.listwise_max_lists)
    finally:
        con.close()
    if len(lists) < 10:
        return None, {"skipped.listwise": f"only {len(lists)} scored lists; need >= 10"}
    model = ListwiseReranker().fit_lists(lists)
    return model, {"listwise.lists": float(len(lists))}


def build_rerank(workspace: Workspace, build: ArtifactBuild,
                 config: RerankConfig | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Save the configured pipeline and its measured trade-off curve into ``build``.

    Returns the figures to print: items, lists evaluated, and at the configured diversity the
    NDCG@k kept and the gains in intra-list distance, category coverage and brand entropy.
    """
    config = config or RerankConfig.from_toml(workspace.config())
    step = progress or (lambda _name: None)
    step("catalog")
    con = workspace.connect(read_only=True)
    try:
        items = con.sql("SELECT * FROM items").to_arrow_table()
        vectors = _item_vectors(build.path)
        catalog = ItemCatalog.from_items(items, vectors)
        step("logged lists")
        lists = logged_lists(con, catalog, limit=500, min_len=5)
    finally:
        con.close()
    out = build.component(COMPONENT)
    metrics: dict[str, Any] = {"items": float(len(catalog.item_ids)),
                               "with_vectors": float(vectors is not None),
                               "lists": float(len(lists))}
    chosen = {"method", "diversity"} & set(workspace.config().get("rerank", {}))
    if not lists and not chosen and config.method != "none":
        # nothing to measure the trade-off on: keep the ranker's order unless asked
        config = replace(config, method="none")
        metrics["skipped.diversity"] = DIVERSITY_SKIP
    listwise = None
    if config.uses_listwise:
        step("listwise model")
        listwise, lw_metrics = _train_listwise(workspace, build.path, catalog, config)
        metrics.update(lw_metrics)
        if listwise is None:  # serve the ranker's order where the model was asked for
            config = replace(
                config, method="none" if config.method == "listwise" else config.method,
                search_method="none" if config.search_method == "listwise"
                else config.search_method)
    RerankPipeline(config, catalog=catalog, listwise=listwise).save(out)
    if not lists:
        return metrics
    step("trade-off curve")
    k = min(config.k, 10)
    knobs = tuple(sorted(set(DEFAULT_KNOBS) | {config.diversity}))
    attrs = tuple(a for a in ("category", "brand", "price_band") if a in catalog.attributes)
    points = tradeoff_curve(lists, methods=("dpp", "mmr"), knobs=knobs, k=k,
                            similarity="auto", attributes=attrs or config.attributes)
    (out / CURVE_FILE).write_text(json.dumps({"k": k, "points": [p.as_dict() for p in points]},
                                             indent=2))
    (out / PLOT_FILE).write_bytes(plot_tradeoff(points, title=f"re-rank trade-off (k={k})"))
    method = config.method if config.method != "none" else "dpp"
    base = next(p for p in points if p.method == method and p.diversity == 0.0)
    at = next(p for p in points if p.method == method and p.diversity == config.diversity)
    metrics.update({
        f"ndcg@{k}_kept": at.ndcg,
        f"true_ndcg@{k}": at.ndcg_true,
        f"true_ndcg@{k}_ranker": base.ndcg_true,
        "ild_gain": at.ild - base.ild,
        "category_coverage_gain": at.category_coverage - base.category_coverage,
        "brand_entropy_gain_bits": at.brand_entropy - base.brand_entropy,
        "ms_per_list": at.ms_per_list,
    })
    return metrics


def load_rerank(artifact: Path) -> RerankPipeline:
    """The pipeline saved in ``artifact/rerank/``, with item vectors from ``embeddings/``."""
    return RerankPipeline.load(artifact / COMPONENT, vectors=_item_vectors(artifact))
