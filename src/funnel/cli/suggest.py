"""``funnel suggest ...``: build the query-suggestion model and try it from the shell."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from funnel.cli._app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    print_json,
    stdout,
    summary_table,
    user_errors,
)
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

suggest_app = typer.Typer(
    help="Query suggestion: completion, related queries, hint query, refinements.",
    no_args_is_help=True,
)
app.add_typer(suggest_app, name="suggest")

KOpt = Annotated[int, typer.Option("--k", "-k", min=1, max=50, help="How many suggestions.")]
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Personalize for this user.")]


def _model(workspace: Path):  # type: ignore[no-untyped-def]
    from funnel.suggest import load_suggest

    return load_suggest(Workspace.open(workspace).artifacts.require_current())


@suggest_app.command("build")
def build(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    evaluate: Annotated[
        bool, typer.Option("--eval/--no-eval", metavar="",
                           help="Hold out the last searches and report MRR.")
    ] = True,
    min_count: Annotated[int | None, typer.Option(help="Override [suggest] min_count.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Mine the search log and write a new artifact version with 'suggest/'.

    Normalizes and scores queries (decayed frequency x click/booking quality), builds the
    completion index (typos, pinyin, personalization), related queries, hints and refinement
    chips; with --eval first reports MRR vs most-popular completion on held-out searches.
    Example:

        funnel suggest build --workspace ws --min-count 3
    """
    from funnel.suggest.build import build_suggest, suggest_config

    with user_errors():
        ws = Workspace.open(workspace)
        cfg = suggest_config(ws)
        if min_count is not None:
            cfg = dataclasses.replace(cfg, min_count=min_count)
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            bar.add_task("mining queries, evaluating and building the suggest index", total=None)
            with ws.artifacts.begin() as art:
                metrics = build_suggest(ws, art, cfg, evaluate=evaluate)
                version = art.commit().name
        metrics["version"] = version
        if json_out:
            print_json(metrics)
        console.print(summary_table("funnel suggest build", metrics))


@suggest_app.command("complete")
def complete(
    prefix: Annotated[str, typer.Argument(help="What the user typed so far.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    k: KOpt = 10,
    user: UserOpt = None,
    market: Annotated[str | None, typer.Option(help="The user's market.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Complete a prefix (typos, pinyin and personalization included).

    Example:

        funnel suggest complete "ams" --user u000012 -w ws
    """
    with user_errors():
        model = _model(workspace)
        queries, scores = model.complete(prefix, k, user_id=user, market=market)
        if json_out:
            print_json({"prefix": prefix, "completions": queries,
                        "scores": [float(s) for s in scores]})
            return
        table = Table(title=f"completions of {prefix!r}")
        table.add_column("#", justify="right")
        table.add_column("query")
        table.add_column("score", justify="right")
        for i, (q, s) in enumerate(zip(queries, scores, strict=True), 1):
            table.add_row(str(i), q, f"{s:.3f}")
        stdout.print(table)


def _print_list(queries: list[str], title: str, payload: dict, json_out: bool) -> None:
    """A numbered list of queries as a table, or ``payload`` as JSON with ``--json``."""
    if json_out:
        print_json(payload)
    else:
        stdout.print(summary_table(title, [(str(i), q) for i, q in enumerate(queries, 1)]))


@suggest_app.command("related")
def related(
    query: Annotated[str, typer.Argument(help="The current query.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    k: KOpt = 10,
    json_out: JsonOpt = False,
) -> None:
    """People also search: related queries for QUERY.

    Example:

        funnel suggest related "amsterdam loft" -w ws
    """
    with user_errors():
        out = _model(workspace).related(query, k)
        _print_list(out, f"related to {query!r}", {"query": query, "related": out}, json_out)


@suggest_app.command("hint")
def hint(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    user: UserOpt = None,
    k: KOpt = 3,
    json_out: JsonOpt = False,
) -> None:
    """Hint queries for the empty search box of a user (popular ones for new users).

    Example:

        funnel suggest hint --user u000012 -w ws
    """
    with user_errors():
        out = _model(workspace).hint(user, k)
        _print_list(out, f"hints for {user or 'a new user'}", {"user": user, "hints": out},
                    json_out)


@suggest_app.command("refine")
def refine(
    query: Annotated[str, typer.Argument(help="The current query.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    k: KOpt = 8,
    json_out: JsonOpt = False,
) -> None:
    """Refinement chips (brand, category, price band) for QUERY.

    Example:

        funnel suggest refine "amsterdam" -w ws
    """
    with user_errors():
        chips = _model(workspace).refinements(query, k)
        if json_out:
            print_json({"query": query, "refinements": chips})
            return
        table = Table(title=f"refinements of {query!r}")
        for col in ("attribute", "value", "share", "query"):
            table.add_column(col)
        for c in chips:
            table.add_row(str(c["attribute"]), str(c["value"]), f"{c['share']:.2f}",
                          str(c["query"]))
        stdout.print(table)
