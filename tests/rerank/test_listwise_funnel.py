"""The listwise re-ranker inside the funnel: trained by the build, saved with the re-rank
component, served on searches, and judged by the exact expected clicks of its lists."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from funnel.data.store import EventStore
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.data.synthetic.context import LIST_CONTEXT, expected_clicks
from funnel.evaluate.list_context import (
    ClickModel,
    ContextList,
    context_figures,
    list_clicks,
    oracle_order,
    pointwise_order,
    truth_order,
)
from funnel.rerank.base import ItemFeatures
from funnel.rerank.listwise import ListwiseReranker
from funnel.rerank.pipeline import RerankConfig, RerankPipeline

MODEL = ClickModel(context_strength=0.5, continue_after_click=0.5)


def _list(attract: list[float], brand: list[int], scores: list[float]) -> ContextList:
    ids = [f"i{j}" for j in range(len(attract))]
    feats = ItemFeatures(attributes={"brand": [None if b < 0 else f"b{b}" for b in brand],
                                     "category": ["c"] * len(brand)})
    return ContextList(ids, np.array(scores, float), np.array(attract, float),
                       np.array(brand, np.int64), feats)


def test_list_clicks_is_the_closed_form_by_hand() -> None:
    # shown order: i1 (0.4, brand 7), i0 (0.5, brand 7), i2 (0.3, no brand); exam t^-0.75
    lst = _list([0.5, 0.4, 0.3], [7, 7, -1], [0.1, 0.9, 0.2])
    c1 = 1.0 * 0.4
    c2 = 2 ** -0.75 * 0.5 * 0.5  # one brand-7 item above: x (1 - 0.5)
    c3 = 3 ** -0.75 * 0.3
    reach2 = 1 - c1 * 0.5
    reach3 = reach2 * (1 - c2 * 0.5)
    want = c1 + reach2 * c2 + reach3 * c3
    rows = pointwise_order(lst, 3)
    assert rows.tolist() == [1, 2, 0]  # by score
    assert list_clicks(lst, np.array([1, 0, 2]), MODEL, 3) == pytest.approx(want, abs=1e-12)
    assert list_clicks(lst, np.array([1, 0, 2]), MODEL, 3) == pytest.approx(expected_clicks(
        [0.4, 0.5, 0.3], [7, 7, -1], strength=0.5, continue_after_click=0.5))


def test_the_oracle_separates_near_duplicates_and_is_never_below_the_truth_order() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = 12
        lst = _list(rng.uniform(0.05, 0.6, n).tolist(), rng.integers(-1, 3, n).tolist(),
                    rng.normal(size=n).tolist())
        best = list_clicks(lst, oracle_order(MODEL)(lst, 8), MODEL, 8)
        assert best >= list_clicks(lst, truth_order(lst, 8), MODEL, 8) - 1e-12
    # two equally attractive items of one brand and a slightly weaker one of another: the
    # oracle puts the other brand second, the truth order does not
    lst = _list([0.5, 0.49, 0.45], [1, 1, 2], [0.0, 0.0, 0.0])
    assert oracle_order(MODEL)(lst, 3).tolist() == [0, 2, 1]
    assert truth_order(lst, 3).tolist() == [0, 1, 2]


def test_context_figures_report_every_order_on_the_held_half() -> None:
    rng = np.random.default_rng(1)
    lists = [_list(rng.uniform(0.05, 0.6, 10).tolist(), rng.integers(0, 3, 10).tolist(),
                   rng.normal(size=10).tolist()) for _ in range(40)]
    f = context_figures(lists, MODEL, k=5)
    assert f["rerank.context.lists"] == 20
    for name in ("pointwise", "dpp", "truth", "oracle"):
        assert 0 < f[f"rerank.context.{name}.clicks"] < 5
    assert f["rerank.context.oracle.clicks"] >= f["rerank.context.truth.clicks"]
    assert f["rerank.context.truth.ndcg"] == pytest.approx(1.0)
    assert "rerank.context.listwise.clicks" not in f  # no model given


@pytest.fixture(scope="module")
def listwise_workspace(tmp_path_factory):
    """A generated marketplace with list context, built with the listwise model on searches."""
    from funnel.build import run_build
    from funnel.config import dump_toml
    from funnel.pipeline.sessions import build_sessions
    from funnel.workspace import Workspace

    ws = Workspace.init(tmp_path_factory.mktemp("lw"))
    tables = generate_tables(MarketplaceConfig(n_events=20_000, seed=4, n_items=120,
                                               **LIST_CONTEXT))
    with EventStore.open(ws.store_path) as store:
        for kind in ("items", "users", "events", "truth"):
            store.insert(kind, tables[kind])
        build_sessions(store.con)
    raw = ws.config()
    raw.setdefault("rerank", {})["search_method"] = "listwise"
    raw.setdefault("rank", {})["models"] = ["lr"]
    raw["rank"]["serve_model"] = "lr"
    ws.config_path.write_text(dump_toml(raw))
    run_build(ws, ("catalog", "embeddings", "recall", "rank", "rerank"))
    return ws


@pytest.mark.slow
def test_the_build_trains_saves_and_serves_the_listwise_model(listwise_workspace) -> None:
    from funnel.engine.core import Engine

    artifact = listwise_workspace.artifacts.require_current()
    rerank_dir = artifact / "rerank"
    assert (rerank_dir / "listwise" / "listwise.safetensors").exists()
    header = json.loads((rerank_dir / "listwise" / "listwise.json").read_text())
    assert "brand" in header["state"]["attributes"]
    scores = pq.read_table(artifact / "rank" / "heldout_scores.parquet")
    assert scores.num_rows > 0 and set(scores.column_names) == {
        "event_id", "group_id", "click", "score"}
    engine = Engine.load(artifact)
    assert engine.search_rerank.config.method == "listwise"
    assert engine.rerank.listwise is not None
    from funnel.features.personalization import RecentActions

    result = engine.run(query="paris", user_id=None, market=None, filters={}, k=10,
                        state=RecentActions())
    assert 0 < len(result.item_ids) <= 10
    assert len(set(result.item_ids)) == len(result.item_ids)
    loaded = RerankPipeline.load(rerank_dir)
    assert loaded.listwise is not None
    assert loaded.listwise.attributes_ == header["state"]["attributes"]


def test_listwise_without_a_model_is_a_named_error() -> None:
    pipe = RerankPipeline(RerankConfig(method="listwise", scatter=()))
    with pytest.raises(Exception, match="needs a trained model"):
        pipe.rerank(["a", "b"], [1.0, 0.5], k=2)


def test_a_store_made_before_p_attract_still_ingests_new_truth(tmp_path) -> None:
    """A store whose truth table predates the p_attract column takes a new truth file: the
    column is added (NULL in old rows) and rows land by name, not by position."""
    import duckdb

    path = tmp_path / "store.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE truth (event_id VARCHAR NOT NULL, p_click DOUBLE, p_book DOUBLE, "
                "intent_category VARCHAR, intent_brand VARCHAR, intent_market VARCHAR)")
    con.execute("INSERT INTO truth VALUES ('old', 0.1, NULL, 'c', NULL, 'm')")
    con.close()
    tables = generate_tables(MarketplaceConfig(n_events=500, seed=1, **LIST_CONTEXT))
    with EventStore.open(path) as store:
        store.ensure_tables()  # what every ingest does first
        store.insert("truth", tables["truth"])
        rows = store.con.execute(
            "SELECT event_id, p_click, p_attract, intent_market FROM truth "
            "ORDER BY event_id = 'old' DESC LIMIT 2").fetchall()
        new = store.con.execute("SELECT count(*) FROM truth WHERE p_attract IS NOT NULL"
                                ).fetchall()[0][0]
    assert rows[0] == ("old", 0.1, None, "m")
    assert rows[1][2] is None or 0 < rows[1][2] < 1
    assert new == pa.compute.sum(pa.compute.is_valid(tables["truth"]["p_attract"])).as_py()


def test_listwise_reranker_save_load_inside_the_pipeline(tmp_path) -> None:
    from funnel.rerank.listwise import LoggedList

    rng = np.random.default_rng(0)
    lists = [LoggedList(scores=rng.normal(size=6),
                        attributes={"brand": [f"b{j}" for j in rng.integers(0, 3, 6)]},
                        clicked=rng.random(6) < 0.3) for _ in range(60)]
    model = ListwiseReranker(epochs=2).fit_lists(lists)
    pipe = RerankPipeline(RerankConfig(method="listwise", scatter=()), listwise=model)
    pipe.save(tmp_path)
    again = RerankPipeline.load(tmp_path)
    feats = ItemFeatures(attributes={"brand": ["b0", "b0", "b1", "b2", "b1"]})
    ids, scores = ["a", "b", "c", "d", "e"], [0.9, 0.8, 0.7, 0.6, 0.5]
    first = pipe.rerank(ids, scores, k=4, features=feats)
    second = again.rerank(ids, scores, k=4, features=feats)
    assert first.item_ids == second.item_ids and first.scores == second.scores


def test_the_report_shows_every_order_it_has_figures_for() -> None:
    from funnel.evaluate.report import _tables

    figures = {"rerank.context.k": 10.0, "rerank.context.lists": 3.0,
               "rerank.context.pointwise.clicks": 0.5, "rerank.context.pointwise.ndcg": 0.9,
               "rerank.context.pointwise.brand_entropy": 2.5,
               "rerank.context.oracle.clicks": 0.6}
    rows = _tables(figures, 10)["context"]
    assert [r["order"] for r in rows] == ["pointwise", "oracle"]
    assert rows[0]["clicks"] != "n/a" and rows[1]["ndcg"] == "n/a"
