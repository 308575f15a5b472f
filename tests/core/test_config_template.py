"""A workspace made by the CLI starts with every stage's table and its defaults, commented
(issue 20): uncommented, each table loads as exactly the stage's defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from funnel.cli import app
from funnel.config import section
from funnel.config_template import config_template, stage_config_classes


def test_every_table_uncommented_loads_as_its_defaults() -> None:
    text = config_template()
    raw = tomllib.loads(text)
    assert raw == {"sessions": {"gap_minutes": 30.0}, **{
        name: {} for name, _cls, _about in stage_config_classes() if name != "sessions"}}
    uncommented = "\n".join(line[2:] if line.startswith("# ") and " = " in line else line
                            for line in text.splitlines() if "= ..." not in line)
    full = tomllib.loads(uncommented)
    for name, cls, _about in stage_config_classes():
        assert full[name], name  # every table lists its keys
        assert section(full, name, cls) == cls(), name


def test_funnel_init_writes_the_commented_template(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    res = CliRunner().invoke(app, ["init", "--workspace", str(root)])
    assert res.exit_code == 0, res.output
    text = (root / "funnel.toml").read_text()
    assert text == config_template()
    assert "# scatter = [{attribute = \"brand\", max_count = 2, window = 5}]" in text
