"""``funnel evaluate`` from the command line: errors, and a real event log (DIGINETICA views)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnel.cli import app
from funnel.data.paths import shared_data_dir
from funnel.workspace import Workspace

runner = CliRunner()


def test_not_a_workspace(tmp_path: Path) -> None:
    res = runner.invoke(app, ["evaluate", "--workspace", str(tmp_path / "nope")])
    assert res.exit_code == 1
    assert "not a funnel workspace" in " ".join(res.output.split())


def test_bad_split_date(evaluated) -> None:  # noqa: ANN001 - fixture
    root = str(evaluated.ws.root)
    res = runner.invoke(app, ["evaluate", "-w", root, "--split-date", "next tuesday"])
    assert res.exit_code == 1
    assert "--split-date: expected an ISO date" in res.output
    res = runner.invoke(app, ["evaluate", "-w", root, "--split-date", "1999-01-01"])
    assert res.exit_code == 1
    assert "leaves no training or no held-out events" in " ".join(res.output.split())


def test_empty_store(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "empty")
    res = runner.invoke(app, ["evaluate", "-w", str(ws.root)])
    assert res.exit_code == 1
    assert "the events table is empty" in " ".join(res.output.split())


@pytest.mark.slow
def test_real_session_log_says_what_does_not_apply(tmp_path: Path) -> None:
    path = shared_data_dir() / "diginetica-sample-srgnn" / "sample_train-item-views.csv"
    if not path.exists():
        pytest.skip(f"DIGINETICA sample not found at {path}")
    root = tmp_path / "digi"
    for args in (["init", "-w", str(root)],
                 ["ingest", "-w", str(root), "--format", "diginetica", str(path)],
                 ["sessions", "-w", str(root)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    out, figures = tmp_path / "eval", tmp_path / "figures.json"
    res = runner.invoke(app, ["evaluate", "-w", str(root), "--out", str(out), "--json",
                              str(figures), "--max-cases", "40"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    na = report["not_applicable"]
    # views only: no impressions, searches, bookings, truth or catalog attributes
    for name in ("ranker AUC / group AUC / logloss / calibration", "gap to Bayes-optimal",
                 "search NDCG/MRR", "booking NDCG/MRR", "suggestion MRR",
                 "brand entropy, categories per list"):
        assert name in na, name
    flat = json.loads(figures.read_text())
    assert flat["funnel.next_click.n"] == 40
    assert 0.0 <= flat["funnel.next_click.ndcg@10"] <= 1.0
    assert "rank.auc" not in flat and "bayes.auc" not in flat
    assert any("rank stage trained on" in note and "clicks" in note for note in report["notes"])
    assert (out / "report.html").stat().st_size > 10_000
