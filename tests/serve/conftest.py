"""A small synthetic marketplace, built once per test session, that the server serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnel.workspace import Workspace


def build_small_workspace(root: Path, *, events: int = 30_000, seed: int = 3) -> Workspace:
    from funnel.cli.build import DEFAULT_STAGES, run_build
    from funnel.data.ingest import ingest_file
    from funnel.data.store import EventStore
    from funnel.data.synthetic import MarketplaceConfig, generate
    from funnel.pipeline.sessions import build_sessions

    ws = Workspace.init(root)
    raw = ws.raw_dir / "gen"
    generate(MarketplaceConfig(n_events=events, seed=seed), raw)
    for path in [raw / "items.parquet", raw / "users.parquet",
                 *sorted((raw / "events").glob("*.parquet")),
                 *sorted((raw / "truth").glob("*.parquet"))]:
        ingest_file(ws, path)
    with EventStore.open(ws.store_path) as store:
        build_sessions(store.con)
    run_build(ws, DEFAULT_STAGES)
    return ws


@pytest.fixture(scope="session")
def served_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_small_workspace(tmp_path_factory.mktemp("served"))
