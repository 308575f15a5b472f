"""The configured pipeline: TOML config, step order, timings, save/load round-trip."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from funnel.exceptions import ConfigError
from funnel.rerank import ItemFeatures
from funnel.rerank.catalog import ItemCatalog, price_bands
from funnel.rerank.pipeline import RerankConfig, RerankPipeline, get_reranker
from funnel.rerank.scatter import ScatterError, find_violations

TOML = """
[rerank]
method = "mmr"
diversity = 0.5
k = 5
similarity = "attributes"
attributes = ["brand"]
sponsored_positions = [1]
ecpm_floor = 0.1

[[rerank.scatter]]
attribute = "brand"
max_count = 1
window = 2

[[rerank.merch]]
action = "pin"
item_id = "e"
position = 0

[[rerank.merch]]
action = "bury"
attribute = "brand"
value = "D"
"""


def _config() -> RerankConfig:
    return RerankConfig.from_toml(tomllib.loads(TOML))


def _run(p: RerankPipeline):
    f = ItemFeatures(attributes={"brand": ["A", "A", "B", "B", "C", "A", "D"]})
    return p.rerank(list("abcdefg"), [7, 6, 5, 4, 3, 2, 1.5], features=f,
                    sponsored_ids=["s1", "s2"], sponsored_ecpm=[0.05, 0.2],
                    sponsored_features=ItemFeatures(attributes={"brand": ["Z", "A"]}))


def test_config_from_toml() -> None:
    cfg = _config()
    assert cfg.method == "mmr" and cfg.k == 5 and cfg.attributes == ("brand",)
    (rule,) = cfg.scatter_rules()
    assert (rule.attribute, rule.max_count, rule.window) == ("brand", 1, 2)
    assert [r.action for r in cfg.merch_rules()] == ["pin", "bury"]
    assert RerankConfig.from_toml({}) == RerankConfig()
    windowed = RerankConfig.from_toml({"rerank": {"dpp_window": 4}}).make_reranker()
    assert windowed.get_params()["window"] == 4
    assert RerankConfig().make_reranker().get_params()["window"] is None


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[rerank]\ndiversty = 0.2", r"unknown key\(s\) diversty"),
        ("[rerank]\nmethod = 'xgb'",
         r"method: expected one of \['dpp', 'listwise', 'mmr', 'none'\]"),
        ("[rerank]\ndiversity = 2.0", r"diversity: expected a float in \[0, 1\], got 2.0"),
        ("[rerank]\nk = '5'", r"k: expected int, got '5'"),
        ("[rerank]\ndpp_window = -1", r"dpp_window: expected an int >= 0 \(0 = off\)"),
        ("[[rerank.scatter]]\nattribute = 'brand'\nwindow = 0",
         r"scatter\]\] #1: ScatterRule.window must be an int >= 1; got 0"),
        ("[[rerank.merch]]\naction = 'pin'\nitem_id = 'a'", "needs position >= 0"),
    ],
)
def test_config_errors(toml: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RerankConfig.from_toml(tomllib.loads(toml))


def test_registry() -> None:
    assert get_reranker("dpp").__name__ == "DPPReranker"
    with pytest.raises(ValueError,
                       match="unknown re-ranker 'lgbm'; valid names are dpp, listwise, mmr"):
        get_reranker("lgbm")


def test_pipeline_by_hand() -> None:
    r = _run(RerankPipeline(_config()))
    # pin e@0 (brand C); s2 (eCPM .2 >= .1, brand A) at slot 1, s1 refused; g (brand D)
    # buried; MMR order of the rest a, c, b, d, f then scatter (<= 1 brand per 2):
    # pos2 must avoid A (s2 at 1) -> c (B); pos3 -> a (A); pos4 -> d (B).
    assert r.item_ids == ["e", "s2", "c", "a", "d"]
    assert r.kinds == ["pinned", "sponsored", "organic", "organic", "organic"]
    assert r.scores == [3.0, 0.2, 5.0, 7.0, 4.0]
    assert r.scatter.satisfied
    assert r.notes == ("1 sponsored item(s) below the eCPM floor 0.1: s1",)
    assert set(r.timings_ms) == {"merch", "sponsored", "diversity", "scatter", "total"}
    assert all(v >= 0 for v in r.timings_ms.values())
    assert r.to_dict()["scatter_satisfied"] is True


def test_pipeline_raises_when_configured() -> None:
    cfg = RerankConfig(method="none", k=3, on_violation="raise",
                       scatter=({"attribute": "brand", "max_count": 1, "window": 3},))
    f = ItemFeatures(attributes={"brand": ["A", "A", "A"]})
    with pytest.raises(ScatterError, match="position 1"):
        RerankPipeline(cfg).rerank(["a", "b", "c"], [3, 2, 1], features=f)


def test_pipeline_scatter_holds_on_random_lists() -> None:
    rng = np.random.default_rng(0)
    rules_cfg = ({"attribute": "brand", "max_count": 1, "window": 3},
                 {"attribute": "category", "max_count": 2, "window": 4})
    cfg = RerankConfig(method="dpp", diversity=0.4, k=12, similarity="mixed",
                       scatter=rules_cfg)
    p = RerankPipeline(cfg)
    for _ in range(20):
        n = 60
        f = ItemFeatures(vectors=rng.normal(size=(n, 8)), attributes={
            "brand": rng.choice(list("ABCDEF"), n).tolist(),
            "category": rng.choice(list("xyz"), n).tolist()})
        ids = [f"i{i}" for i in range(n)]
        r = p.rerank(ids, rng.normal(size=n), features=f)
        assert len(r.item_ids) == 12 and r.scatter.satisfied
        rows = [ids.index(i) for i in r.item_ids]
        assert find_violations(rows, f.attributes, cfg.scatter_rules()) == []


def test_save_load_round_trip(tmp_path: Path) -> None:
    import pyarrow as pa

    items = pa.table({"item_id": list("abcdefg"), "brand": list("AABBCAD"),
                      "category": list("xxyyzzx"),
                      "price": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, None],
                      "attributes": ['{"seller": "s1"}'] * 7})
    catalog = ItemCatalog.from_items(items)
    assert catalog.attributes["seller"] == ["s1"] * 7
    p = RerankPipeline(_config(), catalog=catalog)
    p.save(tmp_path)
    q = RerankPipeline.load(tmp_path)
    assert q.config == p.config
    a = p.rerank(list("abcdefg"), [7, 6, 5, 4, 3, 2, 1.5])
    b = q.rerank(list("abcdefg"), [7, 6, 5, 4, 3, 2, 1.5])
    assert (a.item_ids, a.kinds, a.scores) == (b.item_ids, b.kinds, b.scores)


def test_price_bands_by_hand() -> None:
    # one group of five prices -> quintiles p0..p4; None stays None; groups are separate
    bands = price_bands([1, 2, 3, 4, 5, None, 100], ["g"] * 6 + ["h"])
    assert bands == ["p0", "p1", "p2", "p3", "p4", None, "p0"]


def test_missing_features_fall_back_to_ranker_order_with_a_note() -> None:
    r = RerankPipeline(RerankConfig(k=3)).rerank(["a", "b", "c", "d"], [1, 4, 3, 2])
    assert r.item_ids == ["b", "c", "d"]
    assert r.notes == ("diversity skipped: similarity='attributes' needs attribute(s) "
                       "['category', 'brand'] the list does not have",)


def test_empty_list_with_sponsored_only() -> None:
    cfg = RerankConfig(k=3, sponsored_positions=(0, 1))
    r = RerankPipeline(cfg).rerank([], [], sponsored_ids=["s1", "s2"],
                                   sponsored_ecpm=[0.3, 0.5])
    assert r.item_ids == ["s2", "s1"] and r.kinds == ["sponsored", "sponsored"]


def test_catalog_fills_attributes_the_caller_lacks() -> None:
    import pyarrow as pa

    items = pa.table({"item_id": list("abcd"), "brand": list("XXYY"),
                      "category": list("pppp"), "price": [1.0, 2.0, 3.0, 4.0],
                      "attributes": ['{"seller": "s1"}', '{"seller": "s1"}',
                                     '{"seller": "s2"}', '{"seller": "s2"}']})
    cfg = RerankConfig(method="none", k=4,
                       scatter=({"attribute": "seller", "max_count": 1, "window": 2},))
    p = RerankPipeline(cfg, catalog=ItemCatalog.from_items(items))
    # the caller knows brands (deliberately different from the catalog's) but not sellers
    given = ItemFeatures(attributes={"brand": ["Q", "R", "S", "T"]})
    r = p.rerank(list("abcd"), [4, 3, 2, 1], features=given)
    assert r.item_ids == ["a", "c", "b", "d"]  # sellers s1 s2 s1 s2, from the catalog
    assert p._features(np.array(list("ab"), dtype=object),
                       ItemFeatures(attributes={"brand": ["Q", "R"]})).attributes["brand"] == [
        "Q", "R"]
