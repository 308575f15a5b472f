"""A small synthetic marketplace, evaluated once per test session (train as of D, replay)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from funnel.evaluate.run import EvalConfig, EvalResult
from funnel.workspace import Workspace

FAST_CONFIG = """\
[sessions]
gap_minutes = 30

[embed]
n_threads = 1
epochs = 3
query_epochs = 3
type_epochs = 5

[rank]
models = ["gbdt"]
serve_model = "gbdt"
train_cvr = false
"""
EVAL = EvalConfig(max_cases=40, max_ranker_requests=200, curve_lists=20, seed=0)


@dataclass
class Evaluated:
    ws: Workspace
    out: Path
    result: EvalResult
    split_ms: int


def small_workspace(root: Path, *, events: int, seed: int) -> Workspace:
    """Generated, ingested and sessionized (nothing built), with the fast stage settings."""
    from funnel.build import synthetic_workspace

    ws = synthetic_workspace(root, events=events, seed=seed, stages=())
    ws.config_path.write_text(FAST_CONFIG)  # read by the build and evaluation, not by ingest
    return ws


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    from funnel.evaluate.run import evaluate_workspace
    from funnel.evaluate.split import choose_split

    ws = small_workspace(tmp_path_factory.mktemp("eval-ws"), events=12_000, seed=5)
    out = ws.root / "evaluation"
    result = evaluate_workspace(ws, out, config=EVAL)
    return Evaluated(ws, out, result, choose_split(ws))
