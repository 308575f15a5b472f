"""``funnel evaluate recall``: recall@K per source on held-out sessions (or, with ``--split``,
the generative samplers on a DiffRec split), and the old names as hidden aliases:
``funnel recall-eval`` and ``funnel index`` (= ``funnel build --stages recall``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from funnel.cli._app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    fail,
    print_json,
    summary_table,
    user_errors,
)
from funnel.cli.build import DetailsOpt, run_stages
from funnel.cli.evaluate import evaluate_app
from funnel.cli.generative import compare_on_split, split_options_used
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from funnel.recall.base import CandidateSource

DatasetOpt = Annotated[str, typer.Option(
    "--dataset", help="'workspace' (its sessions and events) or 'diginetica' (the shared real "
                      "log).")]
TestFractionOpt = Annotated[float, typer.Option(
    "--test-fraction", help="Latest share of sessions held out.")]
SplitOpt = Annotated[Path | None, typer.Option(
    "--split", help="A DiffRec split directory (train_list.npy, valid_list.npy, test_list.npy, "
    "\\[user, item] integer pairs): compare EASE, item-kNN, RP3beta, MultVAE and every "
    "generative sampler on it instead.")]
QuickOpt = Annotated[bool, typer.Option(
    "--quick", metavar="", help="--split: 2 configs x 20 epochs per method instead of 4 x 60.")]
ConfigsOpt = Annotated[int | None, typer.Option(
    "--configs", min=1, max=4, help="--split: configurations tried per method.")]
EpochsOpt = Annotated[int | None, typer.Option(
    "--epochs", min=1, help="--split: training epochs of every neural method.")]
DreamrecOpt = Annotated[bool, typer.Option(
    "--dreamrec/--no-dreamrec", metavar="",
    help="--split: also run the embedding-space variant.")]


@evaluate_app.command("recall")
def evaluate_recall_command(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    dataset: DatasetOpt = "workspace",
    test_fraction: TestFractionOpt = 0.1,
    max_cases: Annotated[int, typer.Option("--max-cases", help="Cases sampled.", min=1)] = 2000,
    split: SplitOpt = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the figures as one JSON object to this file.")] = None,
    quick: QuickOpt = False,
    configs: ConfigsOpt = None,
    epochs: EpochsOpt = None,
    dreamrec: DreamrecOpt = True,
) -> None:
    """Recall@20/100/500 of the next clicked and the booked item, per source and merged,
    fitted on the past and scored on the latest sessions.

    With --split: Recall@20 / NDCG@20 of EASE, item-kNN, RP3beta, MultVAE and every generative
    sampler on a DiffRec split, each tuned with the same budget on its valid part (the DiffRec
    protocol).

    Example: funnel evaluate recall --workspace shop --test-fraction 0.1

    Example: funnel evaluate recall --split data/ml-1m_clean --json ml1m.json --quick
    """
    if split is not None:
        compare_on_split(split, json_path=json_path, quick=quick, configs=configs,
                         epochs=epochs, dreamrec=dreamrec)
        return
    used = split_options_used(quick=quick, configs=configs, epochs=epochs, dreamrec=dreamrec)
    if used:
        raise fail(f"{used} go with --split; add a DiffRec split directory, or drop them",
                   code=2)
    rows = holdout_rows(workspace, dataset, test_fraction, max_cases)
    _print_rows(rows, dataset, test_fraction)
    if json_path is not None:
        import json

        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"rows": rows}, indent=1, sort_keys=True))


@app.command("recall-eval", hidden=True)
def recall_eval(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    dataset: DatasetOpt = "workspace",
    test_fraction: TestFractionOpt = 0.1,
    max_cases: Annotated[int, typer.Option("--max-cases", help="Cases sampled.", min=1)] = 2000,
    as_json: JsonOpt = False,
) -> None:
    """The old name of 'funnel evaluate recall' (--json prints the rows to stdout).

    Example: funnel evaluate recall --workspace shop --test-fraction 0.1
    """
    rows = holdout_rows(workspace, dataset, test_fraction, max_cases)
    if as_json:
        print_json({"rows": rows})
    else:
        _print_rows(rows, dataset, test_fraction)


@app.command("index", hidden=True)
def index_cmd(workspace: WorkspaceOpt = DEFAULT_WORKSPACE, details: DetailsOpt = False,
              as_json: JsonOpt = False) -> None:
    """Build every recall index (vector ANN, lexical BM25, co-visitation, popularity,
    query -> items): the same as 'funnel build --stages recall'.

    Example: funnel index --workspace shop
    """
    run_stages(workspace, ("recall",), details=details, as_json=as_json)


def holdout_rows(workspace: Path, dataset: str, test_fraction: float,
                 max_cases: int) -> list[dict[str, Any]]:
    """Recall@K rows (source x target) of every recall source on the latest sessions."""
    from funnel.recall.holdout import diginetica_tables, holdout_recall

    with user_errors():
        if dataset == "diginetica":
            from funnel.data.paths import shared_data_dir

            path = shared_data_dir() / "diginetica-sample-srgnn"
            if not path.exists():
                raise fail(f"diginetica sample not found at {path}")
            sessions, events = diginetica_tables(path)
            items = None
            extra: list[CandidateSource] = []
        elif dataset == "workspace":
            sessions, events, items, extra = _workspace_tables(Workspace.open(workspace))
        else:
            raise fail(f"--dataset must be 'workspace' or 'diginetica'; got {dataset!r}")
        with console.status("fitting on the past, scoring the held-out sessions"):
            return holdout_recall(sessions, events, items, extra_sources=extra,
                                  test_fraction=test_fraction, max_cases=max_cases)


def _workspace_tables(ws: Workspace) -> tuple[Any, Any, Any, list[CandidateSource]]:
    con = ws.connect(read_only=True)
    try:
        sessions = con.sql(
            "SELECT session_id, end_ts, market, items, queries, booked_item FROM sessions"
        ).to_arrow_table()
        events = con.sql(
            "SELECT ts, user_id, event_type, item_id, query, market FROM events").to_arrow_table()
        items = con.sql(
            "SELECT item_id, title, brand, category, market FROM items").to_arrow_table()
    except Exception as err:  # duckdb.CatalogException: no sessions table yet
        raise fail(f"{ws.store_path}: {err}; run 'funnel sessions -w {ws.root}' first") from None
    finally:
        con.close()
    extra: list[CandidateSource] = []
    current = ws.artifacts.current()
    if current is not None and (current / "recall" / "vector").exists():
        from funnel.recall.build import load_recall

        vec = load_recall(current).sources.get("vector")
        extra = [vec] if vec is not None else []
    return sessions, events, items, extra


def _print_rows(rows: list[dict[str, Any]], dataset: str, test_fraction: float) -> None:
    console.print(_recall_table(f"recall@K on {dataset} (held-out {test_fraction:.0%})", rows))
    n_cases = {str(r["target"]): int(float(r["n"])) for r in rows}
    console.print(summary_table("held-out cases", {"dataset": dataset, **n_cases}))


def _recall_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title, header_style="bold")
    keys = [k for k in rows[0] if k not in ("source", "target")] if rows else []
    for col in ("source", "target", *keys):
        table.add_column(col, justify="left" if col in ("source", "target") else "right")
    for row in rows:
        cells = [str(row["source"]), str(row["target"])]
        cells += [f"{row[k]:,.0f}" if k == "n" else f"{row[k]:.3f}" for k in keys]
        table.add_row(*cells)
    return table
