"""End to end: a synthetic workspace -> build_recall -> artifact -> load_recall -> merged recall,
and recall@K on synthetic and real (DIGINETICA) sessions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from funnel.data.paths import shared_data_dir
from funnel.data.store import EventStore
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.pipeline.sessions import build_sessions
from funnel.recall.base import RecallRequest
from funnel.recall.build import RecallConfig, build_recall, load_recall
from funnel.recall.holdout import diginetica_tables, holdout_recall
from funnel.vectors import save_vectors
from funnel.workspace import Workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    ws = Workspace.init(tmp_path_factory.mktemp("ws"))
    tables = generate_tables(MarketplaceConfig(n_events=30_000, seed=7))
    with EventStore.open(ws.store_path) as store:
        for kind in ("items", "users", "events", "truth"):
            store.insert(kind, tables[kind])
        build_sessions(store.con, gap_minutes=30)
    return ws


def planted_item_vectors(items: pa.Table, d: int = 16) -> np.ndarray:
    """Items of one (market, category) share a direction: a stand-in for trained embeddings."""
    rng = np.random.default_rng(0)
    keys = [f"{m}|{c}" for m, c in zip(items.column("market").to_pylist(),
                                      items.column("category").to_pylist(), strict=True)]
    centres = {k: rng.normal(size=d) for k in sorted(set(keys))}
    x = np.stack([centres[k] for k in keys]) + 0.3 * rng.normal(size=(len(keys), d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_build_commit_load_and_merge(workspace):
    con = workspace.connect(read_only=True)
    items = con.sql("SELECT * FROM items").to_arrow_table()
    session = con.sql(
        "SELECT market, items, queries FROM sessions WHERE len(items) >= 3 AND len(queries) > 0 "
        "ORDER BY session_id LIMIT 1"
    ).fetchall()[0]
    con.close()
    build = workspace.artifacts.begin()
    save_vectors(build.component("embeddings"), "item", items.column("item_id").to_pylist(),
                 planted_item_vectors(items))
    metrics = build_recall(workspace, build, RecallConfig(quota_popularity=50))
    version = build.commit()
    assert metrics["items"] == items.num_rows
    assert metrics["vector_items"] == items.num_rows
    assert metrics["covisit_items"] > 0 and metrics["query_items_queries"] > 0
    assert {p.name for p in (version / "recall").iterdir()} == {
        "config.json", "vector", "lexical", "covisit", "popularity", "query_items",
        "cooc", "sr", "sknn",
    }

    bundle = load_recall(workspace.artifacts.require_current())
    assert set(bundle.sources) == {
        "vector", "lexical", "covisit", "popularity", "query_items", "cooc", "sr", "sknn",
        "history",  # fitted on nothing: the request carries the user's earlier items
    }
    assert bundle.config.quota_popularity == 50
    market, clicks, queries = session
    out = bundle.merger.recall(
        RecallRequest(query=queries[0], market=market, recent_items=clicks[:-1], k=500)
    )
    bundle.merger.close()
    assert out.skipped == {}
    assert set(out.timings_ms) == set(bundle.sources)
    assert len(out) > 20 and len(set(out.item_ids.tolist())) == len(out)
    found_by = {name for prov in out.provenance for name in prov}
    assert found_by >= {"vector", "lexical", "covisit", "popularity"}
    known_query = next(iter(bundle.sources["query_items"].lists_.keys))
    with_query = bundle.merger.recall(RecallRequest(query=known_query, k=50))
    assert any("query_items" in prov for prov in with_query.provenance)
    # vector candidates respect the market filter (per-market partitions)
    market_of = dict(zip(items.column("item_id").to_pylist(), items.column("market").to_pylist(),
                         strict=True))
    vec = bundle.sources["vector"].candidates(
        RecallRequest(market=market, recent_items=clicks[:-1], k=20)
    )
    assert len(vec) > 0 and {market_of[i] for i in vec.item_ids.tolist()} == {market}


def test_holdout_recall_on_synthetic_sessions(workspace):
    con = workspace.connect(read_only=True)
    sessions = con.sql("SELECT * FROM sessions").to_arrow_table()
    events = con.sql("SELECT * FROM events").to_arrow_table()
    items = con.sql("SELECT * FROM items").to_arrow_table()
    con.close()
    rows = holdout_recall(sessions, events, items, test_fraction=0.2, max_cases=400)
    table = {(r["source"], r["target"]): r for r in rows}
    merged = table[("merged", "next_click")]
    for source in ("covisit", "popularity", "lexical", "query_items"):
        single = table[(source, "next_click")]
        assert merged["recall@500"] >= single["recall@500"] - 0.02, source
    assert merged["recall@500"] >= 0.8
    assert merged["recall@20"] > table[("popularity", "next_click")]["recall@20"]
    assert table[("merged", "booking")]["n"] > 10


def test_holdout_recall_on_diginetica():
    path = shared_data_dir() / "diginetica-sample-srgnn"
    if not path.exists():
        pytest.skip(f"DIGINETICA sample not found at {path}")
    sessions, events = diginetica_tables(path)
    assert sessions.num_rows == 2986 and events.num_rows == 12391
    rows = holdout_recall(sessions, events, test_fraction=0.2, ks=(20, 100, 500))
    table = {r["source"]: r for r in rows if r["target"] == "next_click"}
    assert set(table) == {"covisit", "popularity", "merged"}
    # co-visitation beats popularity on the next click; merging keeps the best of both
    assert table["covisit"]["recall@20"] > 2 * table["popularity"]["recall@20"]
    assert table["merged"]["recall@500"] >= table["covisit"]["recall@500"]
    assert table["merged"]["recall@500"] >= table["popularity"]["recall@500"]


@pytest.mark.slow
def test_cli_index_and_recall_eval(workspace):
    import json

    from typer.testing import CliRunner

    from funnel.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["index", "--workspace", str(workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["version"].startswith("v") and payload["recall.items"] > 0
    assert (workspace.artifacts.require_current() / "recall" / "lexical").is_dir()
    result = runner.invoke(app, ["recall-eval", "--workspace", str(workspace.root),
                                 "--max-cases", "50", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])["rows"]
    assert {r["source"] for r in rows} >= {"covisit", "popularity", "lexical", "merged"}
    bad = runner.invoke(app, ["recall-eval", "--dataset", "nope"])
    assert bad.exit_code == 1 and "--dataset must be 'workspace' or 'diginetica'" in bad.output
    out = workspace.root / "recall.json"  # the same rows under the evaluate family
    result = runner.invoke(app, ["evaluate", "recall", "--workspace", str(workspace.root),
                                 "--max-cases", "50", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["rows"] == rows
    bad = runner.invoke(app, ["evaluate", "recall", "--quick"])
    assert bad.exit_code == 2
    assert bad.output == ("error: --quick go with --split; add a DiffRec split directory, or "
                          "drop them\n")
