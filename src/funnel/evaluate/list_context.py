"""Expected clicks of re-ranked lists under the synthetic marketplace's true click model.

A pointwise score cannot see the rest of the list; the synthetic users can (near-duplicates of
one brand cannibalize each other, a click may end the scan: :mod:`funnel.data.synthetic.context`).
So a re-ranker is judged here by the exact expected clicks of the list it shows, computed in
closed form from the true context-free attraction of each item (the ``truth`` table's
``p_attract``) - not by clicks logged under another order.

Candidates are each held-out search's logged impressions, scored by the served ranker as at
serving (no logged position). Orders compared on the same lists:

- ``pointwise``: the ranker's order;
- ``dpp``: DPP over brand and category at the diversity that gave the most expected clicks on
  the tuning half of the lists (every other list), reported on the other half;
- ``listwise``: the learned listwise model (:mod:`funnel.rerank.listwise`), when the artifact
  has one.

Also per order: NDCG@k with the true attraction as gain, and brand entropy / distinct brands
in the top k (diversity).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from funnel.data.synthetic.context import EXAM_POWER, expected_clicks
from funnel.evaluate.cases import Case
from funnel.evaluate.oracle import true_attraction
from funnel.rerank.base import ItemFeatures
from funnel.rerank.dpp import DPPReranker
from funnel.rerank.metrics import entropy, ndcg_at_k

DPP_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The DPP diversity knobs tuned over (0 is the pointwise order itself)."""


@dataclass(frozen=True)
class ClickModel:
    """The generator's list-context parameters (``MarketplaceConfig``)."""

    context_strength: float
    continue_after_click: float


@dataclass(frozen=True)
class ContextList:
    """One held-out search's candidates: served scores, true attraction, brand codes."""

    item_ids: list[str]
    scores: np.ndarray
    attract: np.ndarray
    brand: np.ndarray  # int codes within the list, -1 = no brand
    features: ItemFeatures


Order = Callable[[ContextList, int], np.ndarray]


def context_lists(engine: Any, con: duckdb.DuckDBPyConnection, requests: Sequence[Case], *,
                  min_len: int = 5, max_lists: int = 2000) -> list[ContextList]:
    """The held-out searches' logged lists, scored by ``engine``'s ranker as served."""
    chosen = [c for c in requests if c.request_id and len(c.impressions) >= min_len]
    chosen = chosen[:max_lists]
    attraction = true_attraction(con, [str(c.request_id) for c in chosen])
    rank = engine.rank
    out: list[ContextList] = []
    for case in chosen:
        truth = attraction.get(str(case.request_id), {})
        ids = [i for i, _, _ in case.impressions if i in truth]
        if len(ids) < min_len or len(set(ids)) != len(ids):
            continue
        served, _ = rank.score(ids, query=case.query, market=case.market, state=case.state,
                               user_id=case.user_id)
        scores = np.asarray(served, dtype=np.float64)
        feats = engine.rerank.features(ids)
        brands = list(feats.attributes.get("brand", [None] * len(ids)))
        codes: dict[str, int] = {}
        brand = np.array([-1 if b is None else codes.setdefault(str(b), len(codes))
                          for b in brands], dtype=np.int64)
        out.append(ContextList(ids, scores, np.array([truth[i] for i in ids]), brand, feats))
    return out


def pointwise_order(lst: ContextList, k: int) -> np.ndarray:
    return np.argsort(-lst.scores, kind="stable")[:k]


def dpp_order(diversity: float) -> Order:
    reranker = DPPReranker(diversity=diversity, similarity="attributes",
                           attributes=("brand", "category")).fit()

    def order(lst: ContextList, k: int) -> np.ndarray:
        attrs = {a: v for a, v in lst.features.attributes.items() if a in ("brand", "category")}
        return np.asarray(reranker.order(lst.scores, ItemFeatures(attributes=attrs), k))
    return order


def listwise_order(model: Any) -> Order:
    def order(lst: ContextList, k: int) -> np.ndarray:
        return np.asarray(model.order(lst.scores, lst.features, k))
    return order


def oracle_order(model: ClickModel) -> Order:
    """Greedy with the TRUE attraction and click model: at each position the item that adds
    the most expected clicks there - what an order could reach knowing everything the
    generator knows (a yardstick, not a method)."""
    def order(lst: ContextList, k: int) -> np.ndarray:
        left = np.arange(len(lst.item_ids))
        placed: list[int] = []
        reach = 1.0
        counts = np.zeros(int(lst.brand.max()) + 2, dtype=np.int64)  # last slot: no brand
        brand = np.where(lst.brand >= 0, lst.brand, len(counts) - 1)
        for t in range(1, min(k, len(left)) + 1):
            damp = np.where(lst.brand[left] >= 0,
                            (1 - model.context_strength) ** counts[brand[left]], 1.0)
            c = t ** -EXAM_POWER * lst.attract[left] * damp
            best = int(np.argmax(c))
            placed.append(int(left[best]))
            reach *= 1 - c[best] * (1 - model.continue_after_click)
            if lst.brand[left[best]] >= 0:
                counts[brand[left[best]]] += 1
            left = np.delete(left, best)
        return np.array(placed, dtype=np.int64)
    return order


def truth_order(lst: ContextList, k: int) -> np.ndarray:
    """The true attraction's order (a pointwise ranker that knew everything but the list)."""
    return np.argsort(-lst.attract, kind="stable")[:k]


def list_clicks(lst: ContextList, rows: np.ndarray, model: ClickModel, k: int) -> float:
    """Exact expected clicks of showing ``rows`` of ``lst`` in that order (top ``k``)."""
    rows = np.asarray(rows, dtype=np.int64)[:k]
    return expected_clicks(lst.attract[rows], lst.brand[rows],
                           strength=model.context_strength,
                           continue_after_click=model.continue_after_click)


def _per_list(lists: Sequence[ContextList], order: Order, model: ClickModel, k: int
              ) -> dict[str, np.ndarray]:
    clicks, ndcg, brand_h = [], [], []
    for lst in lists:
        rows = order(lst, k)
        clicks.append(list_clicks(lst, rows, model, k))
        ndcg.append(ndcg_at_k(lst.attract[rows], lst.attract, k))
        brand_h.append(entropy([None if b < 0 else str(b) for b in lst.brand[rows]]))
    return {"clicks": np.array(clicks), "ndcg": np.array(ndcg), "brand_entropy":
            np.array(brand_h)}


def _interval(diff: np.ndarray) -> tuple[float, float]:
    half = 1.96 * float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return float(diff.mean()) - half, float(diff.mean()) + half


def context_figures(lists: Sequence[ContextList], model: ClickModel, *, k: int = 10,
                    listwise: Any = None) -> dict[str, float]:
    """``rerank.context.*``: expected clicks per list (and NDCG, brand entropy) per order on
    the evaluation half of ``lists``; DPP's diversity is tuned on the other half."""
    tune, held = list(lists[0::2]), list(lists[1::2])
    if len(held) < 2:
        return {}
    best_d, best = 0.0, -np.inf
    for d in DPP_GRID:
        mean = float(np.mean([list_clicks(lst, dpp_order(d)(lst, k), model, k) for lst in tune]))
        if mean > best:
            best_d, best = d, mean
    orders: dict[str, Order] = {"pointwise": pointwise_order, "dpp": dpp_order(best_d)}
    if listwise is not None:
        orders["listwise"] = listwise_order(listwise)
    orders["truth"] = truth_order
    orders["oracle"] = oracle_order(model)
    per = {name: _per_list(held, order, model, k) for name, order in orders.items()}
    out: dict[str, float] = {"rerank.context.lists": float(len(held)),
                             "rerank.context.k": float(k),
                             "rerank.context.dpp_diversity": best_d}
    for name, values in per.items():
        for key, v in values.items():
            out[f"rerank.context.{name}.{key}"] = float(v.mean())
    if "listwise" in per:
        base = max(("pointwise", "dpp"), key=lambda n: float(per[n]["clicks"].mean()))
        diff = per["listwise"]["clicks"] - per[base]["clicks"]
        lo, hi = _interval(diff)
        out.update({
            "rerank.context.listwise_vs_best": float(per["listwise"]["clicks"].mean()
                                                     / per[base]["clicks"].mean()),
            "rerank.context.listwise_minus_best.ci_low": lo,
            "rerank.context.listwise_minus_best.ci_high": hi,
        })
        lo, hi = _interval(per["listwise"]["clicks"] - per["pointwise"]["clicks"])
        out["rerank.context.listwise_minus_pointwise.ci_low"] = lo
        out["rerank.context.listwise_minus_pointwise.ci_high"] = hi
    return out
