"""End to end: synthetic workspace -> build_rerank -> artifact -> load_rerank, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from funnel.data.store import EventStore
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.rerank.build import build_rerank, load_rerank
from funnel.rerank.pipeline import RerankConfig
from funnel.rerank.scatter import find_violations
from funnel.vectors import save_vectors
from funnel.workspace import Workspace

TOML = """
[rerank]
method = "dpp"
diversity = 0.4
k = 8

[[rerank.scatter]]
attribute = "brand"
max_count = 1
window = 3
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    ws = Workspace.init(tmp_path_factory.mktemp("ws"))
    ws.config_path.write_text(ws.config_path.read_text() + TOML)
    tables = generate_tables(MarketplaceConfig(n_events=10_000, seed=5))
    with EventStore.open(ws.store_path) as store:
        for kind in ("items", "users", "events", "truth"):
            store.insert(kind, tables[kind])
    return ws


def _category_vectors(ws: Workspace) -> tuple[list[str], np.ndarray]:
    # a stand-in for trained embeddings: one direction per category, small noise
    con = ws.connect(read_only=True)
    rows = con.sql("SELECT item_id, category FROM items ORDER BY item_id").fetchall()
    con.close()
    rng = np.random.default_rng(0)
    cats = sorted({c for _, c in rows})
    centres = {c: rng.normal(size=8) for c in cats}
    x = np.stack([centres[c] for _, c in rows]) + 0.2 * rng.normal(size=(len(rows), 8))
    return [i for i, _ in rows], x.astype(np.float32)


@pytest.mark.slow
def test_build_and_load(workspace: Workspace) -> None:
    build = workspace.artifacts.begin()
    ids, vectors = _category_vectors(workspace)
    save_vectors(build.component("embeddings"), "item", ids, vectors)
    metrics = build_rerank(workspace, build)
    version = build.commit()
    assert metrics["items"] == len(ids) and metrics["with_vectors"] == 1.0
    assert metrics["lists"] >= 50
    # diversity 0.4 with category-clustered embeddings: more categories and brands shown,
    # for a bounded loss of the logged order
    assert metrics["category_coverage_gain"] > 0.02
    assert metrics["brand_entropy_gain_bits"] > 0.0
    assert metrics["ild_gain"] > 0.0
    assert 0.8 < metrics["ndcg@8_kept"] < 1.0
    files = {p.name for p in (version / "rerank").iterdir()}
    assert files == {"config.json", "item_attributes.parquet", "curve.json", "tradeoff.png"}
    curve = json.loads((version / "rerank" / "curve.json").read_text())
    assert {p["method"] for p in curve["points"]} == {"dpp", "mmr"}

    pipe = load_rerank(version)
    assert pipe.config == RerankConfig.from_toml(workspace.config())
    assert pipe.catalog is not None and pipe.catalog.vectors is not None
    rng = np.random.default_rng(1)
    cand = rng.choice(ids, size=60, replace=False).tolist()
    result = pipe.rerank(cand, rng.normal(size=60))
    assert len(result.item_ids) == 8 and set(result.item_ids) <= set(cand)
    feats = pipe.catalog.features(cand)
    rows = [cand.index(i) for i in result.item_ids]
    assert result.scatter.satisfied
    assert find_violations(rows, feats.attributes, pipe.config.scatter_rules()) == []


@pytest.mark.slow
def test_cli_curve_and_build(workspace: Workspace) -> None:
    from typer.testing import CliRunner

    from funnel.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["rerank-curve", "--workspace", str(workspace.root), "--k", "5",
                                 "--lists", "40", "--methods", "dpp", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["k"] == 5 and out["lists"] == 40 and len(out["points"]) == 10
    first, last = out["points"][0], out["points"][-1]
    assert first["ndcg"] == pytest.approx(1.0)
    assert last["category_coverage"] > first["category_coverage"]
    result = runner.invoke(app, ["rerank-build", "--workspace", str(workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rerank.lists"] >= 50
    result = runner.invoke(app, ["rerank-curve", "--workspace", str(workspace.root / "nope")])
    assert result.exit_code == 1 and "not a funnel workspace" in result.output
