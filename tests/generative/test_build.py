"""End to end: synthetic workspace -> sessions -> build_generative -> GenerativeRecall."""

from __future__ import annotations

import json

import pytest

from funnel.data.store import EventStore
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.exceptions import ArtifactError
from funnel.generative.build import GenerativeConfig, build_generative, load_generative
from funnel.pipeline.sessions import build_sessions
from funnel.recall.base import RecallRequest
from funnel.workspace import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    ws = Workspace.init(tmp_path_factory.mktemp("ws"))
    tables = generate_tables(MarketplaceConfig(n_events=20_000, seed=3))
    with EventStore.open(ws.store_path) as store:
        for kind in ("items", "users", "events", "truth"):
            store.insert(kind, tables[kind])
        build_sessions(store.con, gap_minutes=30)
    return ws


def test_build_commit_load_and_serve(workspace: Workspace) -> None:
    build = workspace.artifacts.begin()
    metrics = build_generative(
        workspace, build, GenerativeConfig(epochs=3, hidden=64, dim=32, svd_dim=16)
    )
    version = build.commit()
    assert metrics["item_vectors"] == "svd"  # no embeddings in this artifact
    assert metrics["sessions"] >= 10 and metrics["items"] > 10
    assert 0.0 <= metrics["hr50_generative"] <= 1.0 and 0.0 <= metrics["hr50_popularity"] <= 1.0
    assert {p.name for p in (version / "generative").iterdir()} == {
        "config.json", "item_ids.json", "model"}
    saved = json.loads((version / "generative" / "config.json").read_text())
    assert saved["config"]["epochs"] == 3
    source = load_generative(version)
    con = workspace.connect(read_only=True)
    recent = con.execute(
        "SELECT items FROM sessions WHERE len(items) >= 3 ORDER BY session_id LIMIT 1"
    ).fetchone()[0]
    con.close()
    cands = source.candidates(RecallRequest(recent_items=list(recent), k=25))
    assert len(cands.item_ids) == 25
    assert not set(recent) & set(cands.item_ids.tolist())


def test_build_needs_sessions(tmp_path) -> None:
    ws = Workspace.init(tmp_path / "empty")
    con = ws.connect()
    con.execute("DROP TABLE IF EXISTS sessions")
    con.close()
    build = ws.artifacts.begin()
    with pytest.raises(ArtifactError, match="no 'sessions' table; run 'funnel sessions' first"):
        build_generative(ws, build, GenerativeConfig())
    build.abort()
    assert ws.artifacts.current() is None


def test_train_generative_cli_commits_a_version(workspace: Workspace) -> None:
    from typer.testing import CliRunner

    from funnel.cli import app

    before = workspace.artifacts.versions()
    result = CliRunner().invoke(
        app, ["train-generative", "--workspace", str(workspace.root), "--epochs", "1",
              "--json"])
    assert result.exit_code == 0, result.output
    after = workspace.artifacts.versions()
    assert len(after) == len(before) + 1
    assert (workspace.artifacts.require_current() / "generative" / "model").is_dir()
    assert "generative.hr50_generative" in json.loads(result.stdout.strip().splitlines()[-1])
