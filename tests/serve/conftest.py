"""A small synthetic marketplace, built once per test session, that the server serves."""

from __future__ import annotations

import pytest

from funnel.build import synthetic_workspace
from funnel.workspace import Workspace


@pytest.fixture(scope="session")
def served_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return synthetic_workspace(tmp_path_factory.mktemp("served"), events=30_000, seed=3)
