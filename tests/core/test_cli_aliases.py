"""One build command, one evaluation family (issue 20): the old one-stage and evaluation
commands are hidden aliases that run the same code as ``funnel build --stages`` /
``funnel evaluate recall``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnel.build import synthetic_workspace
from funnel.cli import PANELS, app
from funnel.cli.build import ALIASES, parse_settings
from funnel.workspace import Workspace

runner = CliRunner()
HIDDEN = ("embed", "index", "train", "rerank-build", "train-generative", "recall-eval",
          "evaluate-recall", "rerank-curve")


def _commands(help_text: str) -> set[str]:
    return {line.split("│")[1].split()[0] for line in help_text.splitlines()
            if line.startswith("│ ") and line.split("│")[1].strip()
            and not line.split("│")[1].strip().startswith("-")}


def test_aliases_are_hidden_and_the_families_list_their_parts() -> None:
    shown = _commands(runner.invoke(app, ["--help"], env={"COLUMNS": "120"}).output)
    assert {"build", "serve", "evaluate", "suggest"} <= shown
    assert not shown & set(HIDDEN)
    assert set(HIDDEN) <= set(PANELS["Aliases"])
    build_help = " ".join(runner.invoke(app, ["build", "--help"]).output.split())
    for old, stage in ALIASES.items():
        assert f"'{old}' = {stage}" in build_help or f"'funnel {old}' = --stages {stage}" \
            in build_help
    assert {"recall", "rerank"} <= _commands(runner.invoke(app, ["evaluate", "--help"]).output)
    assert "build" not in _commands(runner.invoke(app, ["suggest", "--help"]).output)


def test_no_command_repeats_the_build_abort() -> None:
    cli = Path(__file__).parents[2] / "src" / "funnel" / "cli"
    offenders = [p.name for p in cli.glob("*.py") if ".abort()" in p.read_text()
                 or "artifacts.begin()" in p.read_text()]
    assert offenders == []  # every build goes through funnel.build.run_build


def test_parse_settings_reads_toml_values_and_bare_words() -> None:
    assert parse_settings(["rank.epochs=2", 'rank.models=["lr", "gbdt"]',
                           "rank.serve_model=gbdt", "embed.eval_fraction = 0.1"]) == {
        "rank": {"epochs": 2, "models": ["lr", "gbdt"], "serve_model": "gbdt"},
        "embed": {"eval_fraction": 0.1}}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return synthetic_workspace(tmp_path_factory.mktemp("alias") / "ws", events=5_000, seed=1,
                               stages=("catalog",))


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "rank.epochz=2"], "error: funnel.toml [rank]: unknown key(s) epochz; valid keys"),
    (["--set", "ranking.epochs=2"], "error: --set ranking.*: no [ranking] table; choose from "),
    (["--set", "epochs=2"], "error: --set 'epochs=2': expected TABLE.KEY=VALUE, e.g. --set "
                            "rank.epochs=2"),
])
def test_a_bad_override_fails_before_any_stage_runs(ws: Workspace, args: list[str],
                                                    message: str) -> None:
    before = ws.artifacts.versions()
    res = runner.invoke(app, ["build", "-w", str(ws.root), "--stages", "recall", *args])
    assert res.exit_code == 2
    assert res.output.startswith(message) and res.output.count("\n") == 1
    assert ws.artifacts.versions() == before


def test_an_alias_prints_what_build_prints(ws: Workspace) -> None:
    via_alias = runner.invoke(app, ["index", "-w", str(ws.root), "--json"])
    via_build = runner.invoke(app, ["build", "-w", str(ws.root), "--stages", "recall", "--json"])
    assert via_alias.exit_code == 0 and via_build.exit_code == 0, via_alias.output
    alias, build = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (via_alias, via_build))
    assert set(alias) == set(build) and alias["recall.items"] == build["recall.items"]
    assert alias["version"] < build["version"]  # two versions, the second current
    assert ws.artifacts.require_current().name == build["version"]
    human = runner.invoke(app, ["index", "-w", str(ws.root)])
    assert f"next: funnel serve -w {ws.root}" in human.output


def test_a_selection_on_few_positives_is_doubted() -> None:
    from funnel.cli.build import _select_doubts

    assert _select_doubts({"gbdt.select.valid_positives": 120.0, "rf.select.valid_positives": 500,
                           "gbdt.auc": 0.7}) == [
        "gbdt: feature selection judged on only 120 validation positives (< 200); too few to "
        "trust it"]


def test_evaluate_rerank_and_its_old_name_give_one_curve(ws: Workspace, tmp_path: Path) -> None:
    args = ["-w", str(ws.root), "--k", "5", "--lists", "20", "--methods", "dpp"]
    res = runner.invoke(app, ["evaluate", "rerank", *args, "--json", str(tmp_path / "c.json")])
    assert res.exit_code == 0, res.output
    old = runner.invoke(app, ["rerank-curve", *args, "--json"])
    assert old.exit_code == 0, old.output
    new = json.loads((tmp_path / "c.json").read_text())
    assert new["lists"] == json.loads(old.stdout)["lists"] == 20
    assert len(new["points"]) == len(json.loads(old.stdout)["points"]) > 1
