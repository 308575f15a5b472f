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
