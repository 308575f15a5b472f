"""The ``embeddings`` artifact component, through the API and through ``funnel embed``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from funnel.cli import app
from funnel.embed import ItemEmbeddings, QueryEmbeddings, TypeEmbeddings
from funnel.embed.build import EmbedConfig, build_embeddings
from funnel.exceptions import ConfigError
from funnel.vectors import load_vectors
from funnel.workspace import Workspace


def workspace_with_sessions(root: Path, sim: tuple[pa.Table, pa.Table]) -> Workspace:
    ws = Workspace.init(root)
    sessions, items = sim
    con = ws.connect()
    try:
        con.register("s", sessions)
        con.register("i", items)
        con.execute("CREATE OR REPLACE TABLE sessions AS SELECT * FROM s")
        con.execute("DELETE FROM items")
        con.execute("INSERT INTO items (item_id, market, category, price) "
                    "SELECT item_id, market, category, price FROM i")
    finally:
        con.close()
    return ws


def test_build_writes_item_query_and_type_tables(tmp_path: Path, small_sim) -> None:
    ws = workspace_with_sessions(tmp_path / "ws", small_sim)
    config = EmbedConfig(dim=8, epochs=2, query_dim=4, query_epochs=2, type_dim=4,
                         type_epochs=2, n_threads=1, eval_fraction=0.2)
    with ws.artifacts.begin() as build:
        metrics = build_embeddings(ws, build, config)
        build.commit()
    out = ws.artifacts.require_current() / "embeddings"
    items = load_vectors(out, "item")
    assert items.dim == 8
    # trained items plus cold-start vectors cover the whole catalog (3 x 5 x 3 x 8 = 360)
    assert len(items.ids) == metrics["items"] + metrics["cold_start_items"] == 360
    assert np.allclose(np.linalg.norm(items.vectors, axis=1), 1.0, atol=1e-5)
    assert load_vectors(out, "query").dim == 4
    types = load_vectors(out, "type")
    assert any(t.startswith("user_type:") for t in types.ids)
    assert any(t.startswith("item_type:") for t in types.ids)
    item_types = json.loads((out / "item_types.json").read_text())
    user_types = json.loads((out / "user_types.json").read_text())
    assert len(item_types) == 360
    assert all(t.startswith("item_type:market=m") for t in item_types.values())
    assert user_types and all(t.startswith("user_type:") for t in user_types.values())
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["dim"] == 8 and saved["tables"] == ["item", "query", "type"]
    assert 0.0 < metrics["next_click_hr@10"] <= 1.0
    # every estimator reloads from the component
    assert ItemEmbeddings.load(out).vocab_ == items.ids
    assert QueryEmbeddings.load(out).vectors_.shape[1] == 4
    assert TypeEmbeddings.load(out).vocab_ == types.ids


def test_build_without_sessions_names_the_fix(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    con = ws.connect()
    con.execute("DROP TABLE IF EXISTS sessions")
    con.close()
    with ws.artifacts.begin() as build, pytest.raises(ConfigError, match="funnel sessions"):
        build_embeddings(ws, build, EmbedConfig())


def test_unknown_embed_key_in_funnel_toml_is_a_config_error(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text("[embed]\ndimm = 3\n")
    with pytest.raises(ConfigError, match="dimm"):
        EmbedConfig.from_workspace(ws)


def test_cli_embed_trains_and_commits_a_version(tmp_path: Path, small_sim) -> None:
    ws = workspace_with_sessions(tmp_path / "ws", small_sim)
    ws.config_path.write_text(
        "[embed]\ndim = 8\nquery_epochs = 1\ntype_epochs = 1\nn_threads = 1\n"
    )
    result = CliRunner().invoke(
        app, ["embed", "--workspace", str(ws.root), "--epochs", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["embeddings.items"] > 100
    assert (ws.artifacts.root / payload["version"] / "embeddings" / "item_vectors.npy").exists()


def test_cli_embed_help_has_an_example() -> None:
    result = CliRunner().invoke(app, ["embed", "--help"])
    assert result.exit_code == 0 and "funnel embed --workspace" in result.output
