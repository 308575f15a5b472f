"""``funnel search``, ``funnel recommend`` and ``funnel quarantine`` (issue 20): try the product
and read the quarantine without a server, on a small built workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnel.build import synthetic_workspace
from funnel.cli import PANELS, app
from funnel.data.ingest import ingest_file
from funnel.engine.core import Engine
from funnel.features.personalization import RecentActions
from funnel.workspace import Workspace

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables render at 200 columns whatever the terminal running the suite (their headings
    are single unwrapped lines at any width; a table at 40 columns folds its headers)."""
    from funnel.cli._app import stdout

    monkeypatch.setattr(stdout, "_width", 200)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """5,000 events, catalog and recall only: the engine serves without a ranker (~5 s)."""
    return synthetic_workspace(tmp_path_factory.mktemp("query") / "ws", events=5_000, seed=1,
                               stages=("catalog", "recall"))


def _json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_search_json_is_the_engine_list(built: Workspace) -> None:
    res = runner.invoke(app, ["search", "loft", "-w", str(built.root), "-k", "5", "--json"])
    assert res.exit_code == 0, res.output
    payload = _json(res.stdout)
    engine = Engine.load(built.artifacts.require_current())
    assert payload["version"] == engine.version
    assert payload["match"] == "exact"
    items = payload["items"]
    assert [it["rank"] for it in items] == [1, 2, 3, 4, 5]
    assert set(items[0]) == {"rank", "item_id", "title", "market", "price", "score", "sponsored"}
    assert "loft" in items[0]["title"].lower()
    direct = engine.run(query="loft", user_id=None, market=None, filters={}, k=5,
                        state=RecentActions())
    assert [it["item_id"] for it in items] == list(direct.item_ids)  # what the server would list
    scores = [it["score"] for it in items]
    assert scores == sorted(scores, reverse=True)


def test_search_table_shows_rank_id_title_market_price_score(built: Workspace) -> None:
    res = runner.invoke(app, ["search", "loft", "-w", str(built.root), "-k", "3",
                              "--market", "paris"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.stdout
    for header in ("#", "item", "title", "market", "price", "score"):
        assert header in out
    assert "search 'loft'" in out
    rows = [line for line in out.splitlines() if " i0" in line]
    assert len(rows) == 3 and all("paris" in line for line in rows)


def test_search_that_matches_nothing_says_so(built: Workspace) -> None:
    res = runner.invoke(app, ["search", "qwxzzv plmnb", "-w", str(built.root), "-k", "3"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "no item matched; showing popular items instead" in res.stdout
    res = runner.invoke(app, ["search", "qwxzzv plmnb", "-w", str(built.root), "--json"])
    assert _json(res.stdout)["match"] == "none"


def test_recommend_lists_k_items_for_a_user(built: Workspace) -> None:
    user = Engine.load(built.artifacts.require_current()).catalog.demo_users[0]
    res = runner.invoke(app, ["recommend", user, "-w", str(built.root), "-k", "7", "--json"])
    assert res.exit_code == 0, res.output
    payload = _json(res.stdout)
    assert payload["user"] == user and len(payload["items"]) == 7
    assert len({it["item_id"] for it in payload["items"]}) == 7
    res = runner.invoke(app, ["recommend", user, "-w", str(built.root), "-k", "2"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0 and f"recommended for {user}" in res.stdout


def test_search_before_a_build_is_one_line_with_the_fix(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / ("long-clone-path-" * 8) / "ws")
    for args in (["search", "loft"], ["recommend", "u1"]):
        res = runner.invoke(app, [*args, "-w", str(ws.root)])
        assert res.exit_code == 1
        assert res.output == (f"error: {ws.root}: no artifact has been built yet; "
                              f"run 'funnel build --workspace {ws.root}' first\n")


def test_search_on_a_missing_workspace_creates_nothing(tmp_path: Path) -> None:
    res = runner.invoke(app, ["search", "loft", "-w", str(tmp_path / "typo")])
    assert res.exit_code == 1 and "not a funnel workspace" in res.output
    assert not (tmp_path / "typo").exists()


def test_quarantine_prints_file_row_field_reason(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    res = runner.invoke(app, ["quarantine", "-w", str(ws.root)])
    assert res.exit_code == 0 and f"no quarantined rows in {ws.root}" in res.output
    src = tmp_path / "events.csv"
    src.write_text(
        "event_id,ts,user_id,event_type,item_id\n"
        "e1,2026-01-01T10:00:00Z,u1,click,i1\n"
        "e2,not-a-time,u2,click,i3\n"
        "e3,2026-01-01T10:00:00Z,u3,teleport,i3\n"
        "e4,2026-01-01T10:00:00Z,u3,click,\n", encoding="utf-8")
    assert ingest_file(ws, src).quarantined == 3

    res = runner.invoke(app, ["quarantine", "-w", str(ws.root), "--json"])
    assert res.exit_code == 0, res.output
    payload = _json(res.stdout)
    assert payload["total"] == 3
    by_row = {r["source_row"]: r for r in payload["rows"]}
    assert set(by_row) == {2, 3, 4}
    assert by_row[2]["field"] == "ts" and "timestamp" in by_row[2]["reason"]
    assert by_row[3]["field"] == "event_type" and "unknown event type" in by_row[3]["reason"]
    assert by_row[4]["field"] == "item_id"
    assert all(r["source_file"] == str(src) for r in payload["rows"])

    res = runner.invoke(app, ["quarantine", "-w", str(ws.root), "--limit", "2"],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "quarantined rows in" in res.stdout and "(first 2; --limit 0 for all)" in res.stdout
    lines = [line for line in res.stdout.splitlines() if "events.csv" in line]
    assert len(lines) == 2
    assert "ts" in lines[0] and "timestamp" in lines[0]


def test_commands_are_in_their_help_panels() -> None:
    assert {"search", "recommend"} <= set(PANELS["Serve"])
    assert "quarantine" in PANELS["Data"]
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert res.exit_code == 0
    serve_panel = res.output.split("─ Serve ─")[1].split("─ Evaluate ─")[0]
    assert "search" in serve_panel and "recommend" in serve_panel
