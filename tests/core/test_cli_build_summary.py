"""``funnel build`` ends with one headline per stage, the skips and the next command (issue 20).

It used to print an 85-row table of internal figures and no next step; every figure is still
there behind ``--details`` and ``--json``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_events_only_build import DIVERSITY, LEXICAL, events_workspace, write_click_log

from funnel.cli.build_summary import headline, summary_rows


def test_headlines_equal_hand_written_lines() -> None:
    assert headline("catalog", {"items": 1200.0, "markets": 3.0, "derived_from_events": 7.0}) \
        == "1,200 items, 3 markets (7 known only from events)"
    assert headline("rank", {"lr.auc": 0.7123, "gbdt.auc": 0.75, "bayes.auc": 0.8,
                             "baseline.popularity.auc": 0.6, "gbdt.logloss": 0.3}) \
        == "held-out AUC gbdt 0.750, lr 0.712 (Bayes-optimal 0.800)"
    assert headline("rank", {"gbdt.auc": 0.75, "trained_on": "clicks ...",
                             "serving.order": "fused"}) \
        == "held-out AUC gbdt 0.750; trained on clicks; serves the fused recall order"
    assert headline("recall", {"items": 10.0, "covisit_items": 4.0, "vector_items": 0.0,
                               "session_sequences": 2.0}) \
        == "10 items; sources: covisit, cooc/sr/sknn"
    assert headline("suggest", {"skipped": "no searches"}) == "skipped (see below)"
    assert summary_rows({"catalog": {"items": 2.0, "markets": 1.0, "seconds": 0.25}}) == [
        ("catalog", "0.2 s", "2 items, 1 markets")]


def test_build_prints_stages_skips_and_the_next_command_unwrapped(tmp_path: Path) -> None:
    root = tmp_path / ("a-long-clone-path-" * 6) / "ws"
    events_workspace(root, write_click_log(tmp_path / "clicks.tsv", sessions=120), "yoochoose")
    env = {**os.environ, "COLUMNS": "80", "TERM": "xterm"}
    res = subprocess.run(
        [sys.executable, "-m", "funnel.cli", "build", "-w", str(root),
         "--stages", "catalog,embeddings,recall,rerank"],
        capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    for stage in ("catalog", "embeddings", "recall", "rerank"):
        assert any(line.startswith(f"✓ {stage} ") and line.endswith(" s") for line in lines)
    assert f"warning: lexical: skipped, {LEXICAL}" in lines
    assert f"warning: diversity: skipped, {DIVERSITY}" in lines
    assert (f"next: funnel serve -w {root}   (every figure: funnel build -w {root} --details, "
            "or --json)") in lines
    assert "lexical_build_s" not in res.stderr and "covisit_pairs" not in res.stderr
    detailed = subprocess.run(
        [sys.executable, "-m", "funnel.cli", "build", "-w", str(root), "--stages", "catalog",
         "--details"], capture_output=True, text=True, env=env, timeout=600)
    assert detailed.returncode == 0 and "derived_from_events" in detailed.stderr
