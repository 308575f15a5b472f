"""Trade-off curve on planted structure and on the synthetic marketplace; the PNG plot."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.data.store import memory_store
from funnel.rerank import ItemFeatures
from funnel.rerank.catalog import ItemCatalog
from funnel.rerank.curve import RankedList, logged_lists, plot_tradeoff, tradeoff_curve


def _planted(n_lists: int = 8, n: int = 60, seed: int = 0) -> list[RankedList]:
    # 6 categories on orthogonal directions; the ranker loves category 0, so its top 10 is
    # one category and diversity has a lot to gain
    rng = np.random.default_rng(seed)
    centers = np.linalg.qr(rng.normal(size=(12, 6)))[0].T
    out = []
    for _ in range(n_lists):
        cat = rng.integers(0, 6, size=n)
        vec = centers[cat] + 0.1 * rng.normal(size=(n, 12))
        scores = -cat + 0.3 * rng.uniform(size=n)
        f = ItemFeatures(vectors=vec, attributes={
            "category": [f"c{c}" for c in cat], "brand": [f"b{c}{i % 2}" for i, c in
                                                          enumerate(cat)]})
        out.append(RankedList([f"i{i}" for i in range(n)], scores, f, gains=np.exp(scores)))
    return out


def test_curve_trades_ndcg_for_diversity() -> None:
    pts = tradeoff_curve(_planted(), knobs=(0.0, 0.5, 0.9), k=10)
    assert [(p.method, p.diversity) for p in pts] == [
        ("dpp", 0.0), ("dpp", 0.5), ("dpp", 0.9), ("mmr", 0.0), ("mmr", 0.5), ("mmr", 0.9)]
    for method in ("dpp", "mmr"):
        p0, p5, p9 = (p for p in pts if p.method == method)
        assert p0.ndcg == pytest.approx(1.0)  # knob 0 is the ranker's own order
        assert p0.ndcg_true == pytest.approx(1.0)  # gains are monotone in the scores here
        assert p0.ndcg > p5.ndcg >= p9.ndcg - 1e-9
        assert p0.ild < p5.ild <= p9.ild + 1e-9
        assert p0.category_coverage < 0.5 < p9.category_coverage
        assert p9.category_coverage > 0.9  # all six categories among the 10
        assert p0.brand_entropy < p9.brand_entropy


def test_plot_is_png() -> None:
    pts = tradeoff_curve(_planted(2), knobs=(0.0, 0.5), k=5)
    png = plot_tradeoff(pts)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 400)


def test_empty_lists_rejected() -> None:
    with pytest.raises(ValueError, match="'lists' is empty"):
        tradeoff_curve([])


def test_methods_without_a_diversity_knob_rejected() -> None:
    # "none" (the identity step) takes no diversity knob: a clear error, not a TypeError
    with pytest.raises(ValueError, match=r"unknown diversity method\(s\) \['none'\]"):
        tradeoff_curve(_planted(1), methods=("dpp", "none"), knobs=(0.0,), k=5)


def test_logged_lists_from_synthetic_marketplace() -> None:
    synthetic = pytest.importorskip("funnel.data.synthetic")
    tables = synthetic.generate_tables(synthetic.MarketplaceConfig(n_events=8000, seed=3))
    con = memory_store(tables)
    catalog = ItemCatalog.from_items(tables["items"])
    lists = logged_lists(con, catalog, limit=40, min_len=8)
    assert 10 <= len(lists) <= 40
    first = lists[0]
    assert np.all(np.diff(first.scores) < 0)  # shown order = descending score
    assert first.gains is not None and np.all((first.gains >= 0) & (first.gains <= 1))
    assert set(first.features.attributes) >= {"category", "brand", "price_band"}
    pts = tradeoff_curve(lists, methods=("dpp",), knobs=(0.0, 0.8), k=5,
                         attributes=("category", "brand", "price_band"))
    assert pts[0].ndcg == pytest.approx(1.0)
    assert pts[1].brand_entropy > pts[0].brand_entropy
    assert pts[1].category_coverage > pts[0].category_coverage
