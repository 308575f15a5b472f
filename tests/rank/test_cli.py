"""``funnel train`` end to end on a small synthetic workspace."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from funnel.cli import app
from funnel.workspace import Workspace

from ._data import impressions_workspace


@pytest.mark.slow
def test_train_command_writes_a_version_and_prints_gaps(tmp_path) -> None:
    ws = impressions_workspace(tmp_path / "ws")
    runner = CliRunner()
    result = runner.invoke(app, ["train", "-w", str(ws.root), "--models", "lr,gbdt",
                                 "--epochs", "2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["version"].startswith("v0001")
    assert payload["rank.gbdt.gap_logloss"] == pytest.approx(
        payload["rank.gbdt.logloss"] - payload["rank.bayes.logloss"])
    current = ws.artifacts.require_current()
    assert (current / "rank" / "models" / "gbdt" / "model.txt").exists()
    assert json.loads((current / "rank" / "serving.json").read_text())["model"] == "gbdt"


def test_train_help_has_an_example_and_bad_model_is_a_clean_error(tmp_path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "funnel train --workspace" in result.output
    Workspace.init(tmp_path / "ws")
    bad = runner.invoke(app, ["train", "-w", str(tmp_path / "ws"), "--models", "xgb"])
    assert bad.exit_code == 2 and "unknown ['xgb']" in bad.output
