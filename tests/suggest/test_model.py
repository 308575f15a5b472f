from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from funnel.exceptions import NotFittedError
from funnel.suggest import QuerySuggester, SuggestConfig, build_suggest, load_suggest
from funnel.suggest.evaluate import MostPopularCompletion, completion_metrics, holdout_evaluate
from funnel.vectors import VectorTable
from funnel.workspace import Workspace

from .conftest import StoreBuilder, shop, ts


@pytest.fixture
def model(store: StoreBuilder) -> QuerySuggester:
    return QuerySuggester(SuggestConfig(category_lift=5.0)).fit(shop(store).connect())


def test_complete_related_hint_refinements(model: QuerySuggester) -> None:
    assert model.complete("NIK", 2)[0] == ["nike shoes", "nike socks"]
    assert model.complete("n", 1, user_id="phonefan")[0] == ["nokia phone"]
    assert model.complete("n", 1, user_id="phonefan", categories=())[0] == ["nike shoes"]
    assert model.related("Nike Shoes")[0] == "adidas shoes"
    assert "nike shoes" not in model.related("nike shoes")
    assert model.hint("phonefan") == ["nokia phone"]
    assert model.hint("shoefan", 2)[0] in {"nike shoes", "adidas shoes"}
    assert model.hint("somebody new") == [model.queries_[model.popular_[0]]]
    chips = model.refinements("nike shoes")
    values = {(c["attribute"], c["value"]) for c in chips}
    assert ("brand", "adidas") in values
    assert not any(v == "nike" or a == "category" for a, v in values)  # in query / one value
    assert all(0.05 <= float(c["share"]) <= 0.95 for c in chips)


def test_related_uses_query_embeddings(store: StoreBuilder) -> None:
    con = shop(store).connect()
    vecs = np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)
    table = VectorTable(ids=["Nokia Phone", "nike socks", "nike shoes"], vectors=vecs)
    plain = QuerySuggester(SuggestConfig()).fit(con)
    assert "nike socks" not in plain.related("nokia phone")
    emb = QuerySuggester(SuggestConfig()).fit(con, query_vectors=table)
    assert emb.related("nokia phone")[0] == "nike socks"


def test_save_load_round_trip(model: QuerySuggester, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model.save(tmp_path / "s")
    back = QuerySuggester.load(tmp_path / "s")
    assert back.config == model.config
    for p in ["n", "nike", "ad", "nkie s", "nike s"]:
        for prev in (None, "nike shoes", "adidas"):
            a, sa = model.complete(p, 5, user_id="phonefan", previous_query=prev)
            b, sb = back.complete(p, 5, user_id="phonefan", previous_query=prev)
            assert a == b and np.array_equal(sa, sb)
    assert back.related("nike shoes") == model.related("nike shoes")
    assert back.hint("shoefan", 3) == model.hint("shoefan", 3)
    assert back.refinements("nike shoes") == model.refinements("nike shoes")


def test_errors() -> None:
    with pytest.raises(NotFittedError):
        QuerySuggester().related("x")
    with pytest.raises(TypeError, match="config must be a SuggestConfig; got dict"):
        QuerySuggester({"a": 1}).fit(None)  # type: ignore[arg-type]


def test_mpc_and_metrics_hand_computed() -> None:
    mpc = MostPopularCompletion().fit(["ab", "abc", "b"], [1, 5, 3])
    assert mpc.complete("a", 2) == ["abc", "ab"]
    # "ab": prefix "a" -> rank 2, "ab" -> rank 2 ; "b": "b" -> rank 1
    m = completion_metrics(lambda p, k, t: mpc.complete(p, k), ["ab", "b"], k=2)
    assert m["mrr"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert m["success@1"] == pytest.approx(1 / 3) and m["success@2"] == 1.0


def _planted(store: StoreBuilder) -> StoreBuilder:
    """Phone fans search "apple phone" (10x), food fans "apple pie" (12x); the held-out last
    searches are phone fans', so only a personalised completer ranks "apple phone" first."""
    store.item("ph", title="apple phone", category="phones", brand="apple", price=900.0)
    store.item("pi", title="apple pie", category="food", brand="bakery", price=5.0)
    for i in range(12):
        store.search(f"food{i % 4}", "apple pie", ts(days=i), clicks=["pi"])
    for i in range(10):
        store.search(f"fan{i % 3}", "apple phone", ts(days=i, minutes=1), clicks=["ph"])
    for i in range(3):
        store.search(f"fan{i}", "apple phone", ts(days=20 + i))
    return store


def test_holdout_personalization_beats_mpc_on_planted_log(store: StoreBuilder) -> None:
    cfg = SuggestConfig(min_count=1, holdout_fraction=0.1)
    m = holdout_evaluate(_planted(store).connect(), cfg)
    # 11 prefixes of "apple phone": MPC ranks it 2nd for the 7 up to "apple p", 1st after
    assert m["mrr_mpc"] == pytest.approx((7 * 0.5 + 4) / 11)
    assert m["mrr_ours"] == pytest.approx(1.0)
    assert m["mrr_ours_unpersonalized"] == pytest.approx(m["mrr_mpc"])
    assert m["eval_prefixes"] == 33 and m["seen_query_share"] == 1.0


def test_build_suggest_writes_component(store: StoreBuilder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.init(tmp_path / "ws")
    shop(store)
    store.write_into(ws)
    cfg = dataclasses.replace(SuggestConfig(), min_count=1)
    with ws.artifacts.begin() as build:
        metrics = build_suggest(ws, build, cfg, evaluate=True)
        build.commit()
    assert metrics["n_queries"] == 4 and 0 <= metrics["mrr_ours"] <= 1
    model = load_suggest(ws.artifacts.require_current())
    assert model.complete("nok", 1)[0] == ["nokia phone"]


def test_config_rejects_bad_values_and_unknown_keys() -> None:
    from funnel.config import from_mapping
    from funnel.exceptions import ConfigError

    with pytest.raises(ValueError, match="'holdout_fraction' parameter must be a float in"):
        SuggestConfig(holdout_fraction=1.5)
    with pytest.raises(ValueError, match="'min_count' parameter must be a positive int"):
        SuggestConfig(min_count=0)
    with pytest.raises(ValueError, match="'typo_penalty' parameter must be a float > 0"):
        SuggestConfig(typo_penalty=0.0)
    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(SuggestConfig, {"min_cout": 3})
    cfg = from_mapping(SuggestConfig, {"block_terms": ["a b"], "min_count": 3})
    assert cfg.block_terms == ("a b",) and cfg.min_count == 3
