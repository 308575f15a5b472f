"""Errors and warnings print as ONE whole line: never wrapped, never read as markup (issue 20).

A person copies the path or the command out of an error; rich used to wrap it at the terminal
width (a space inside a file name when piped) and to swallow ``[bracketed]`` words as style tags.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnel.cli import app
from funnel.cli._app import fail, say

runner = CliRunner()


def _long(tmp_path: Path) -> Path:
    return tmp_path / ("deeply-nested-clone-path-" * 10) / "typo-workspace"


def test_missing_workspace_error_is_one_exact_line(tmp_path: Path) -> None:
    root = _long(tmp_path)
    res = runner.invoke(app, ["stats", "--workspace", str(root)])
    assert res.exit_code == 1
    assert res.output == (
        f"error: {root}: not a funnel workspace (no funnel.toml); "
        f"run 'funnel init --workspace {root}' or 'funnel generate' first\n"
    )


@pytest.mark.parametrize("columns", ["40", "80", "200"])
def test_piped_error_is_not_wrapped_at_any_width(tmp_path: Path, columns: str) -> None:
    root = _long(tmp_path)
    env = {**os.environ, "COLUMNS": columns, "TERM": "xterm"}
    proc = subprocess.run(
        [sys.executable, "-m", "funnel.cli", "stats", "--workspace", str(root)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: {root}: not a funnel workspace (no funnel.toml); "
        f"run 'funnel init --workspace {root}' or 'funnel generate' first"
    ]


def test_brackets_in_messages_stay_literal(capsys: pytest.CaptureFixture[str]) -> None:
    exit_ = fail("unknown key [embed] epochs in [rank]; see [bold]docs[/]")
    say("warning", "x" * 300)
    err = capsys.readouterr().err
    assert exit_.exit_code == 1
    assert err.splitlines() == [
        "error: unknown key [embed] epochs in [rank]; see [bold]docs[/]",
        "warning: " + "x" * 300,
    ]


def test_a_failing_ingest_creates_no_workspace(tmp_path: Path) -> None:
    """``funnel ingest missing.csv -w typo-path`` used to create a whole workspace (issue 20)."""
    root = tmp_path / "typo-path"
    res = runner.invoke(app, ["ingest", str(tmp_path / "missing.csv"), "-w", str(root)])
    assert res.exit_code == 1
    assert f"{tmp_path / 'missing.csv'}: no such file or directory" in res.output
    assert not root.exists()
    data = tmp_path / "events.txt"
    data.write_text("a,b\n1,2\n")
    res = runner.invoke(app, ["ingest", str(data), "-w", str(root), "--format", "yoochose"])
    assert res.exit_code == 1
    assert "unknown --format 'yoochose'; expected one of parquet, csv" in res.output
    assert "yoochoose" in res.output and not root.exists()


def test_version_and_help_panels_in_workflow_order() -> None:
    res = runner.invoke(app, ["--version"])
    from funnel import __version__

    assert res.exit_code == 0 and res.output.strip() == f"funnel {__version__}"
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    panels = [res.output.index(f"─ {p} ") for p in ("Data", "Build", "Serve", "Evaluate")]
    assert panels == sorted(panels)
    res = runner.invoke(app, ["embed", "--help"], env={"COLUMNS": "120"})
    assert "Override [embed] epochs." in res.output  # brackets are text, not markup
    assert "<bool>" not in res.output.split("--json", 1)[1].split("\n", 1)[0]  # a flag
