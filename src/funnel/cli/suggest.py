"""``funnel suggest ...``: try the built query-suggestion model from the shell (``suggest
build`` is an alias of ``funnel build --stages suggest``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from funnel.cli._app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    print_json,
    stdout,
    summary_table,
    user_errors,
)
from funnel.cli.build import DetailsOpt, run_stages
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from funnel.suggest.model import QuerySuggester

suggest_app = typer.Typer(
    help="Query suggestion: completion, related queries, hint query, refinements.",
    no_args_is_help=True,
)
app.add_typer(suggest_app, name="suggest")

KOpt = Annotated[int, typer.Option("--k", "-k", min=1, max=50, help="How many suggestions.")]
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Personalize for this user.")]


def _model(workspace: Path) -> QuerySuggester:
    from funnel.suggest import load_suggest

    return load_suggest(Workspace.open(workspace).artifacts.require_current())


@suggest_app.command("build", hidden=True)
def build(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    min_count: Annotated[int | None, typer.Option(help="Override [suggest] min_count.")] = None,
    details: DetailsOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Mine the search log into 'suggest/' of a new artifact version: the same as
    'funnel build --stages suggest'.

    Example:

        funnel suggest build --workspace ws --min-count 3
    """
    keys = {"min_count": min_count} if min_count is not None else {}
    run_stages(workspace, ("suggest",), overrides={"suggest": keys}, details=details,
               as_json=json_out)


@suggest_app.command("complete")
def complete(
    prefix: Annotated[str, typer.Argument(help="What the user typed so far.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    k: KOpt = 10,
    user: UserOpt = None,
    market: Annotated[str | None, typer.Option(help="The user's market.")] = None,
    previous: Annotated[str | None, typer.Option(
        "--previous", help="The session's previous query (context).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Complete a prefix (typos, pinyin, rare prefixes, personalization and the session's
    previous query included), in the learned order.

    Example:

        funnel suggest complete "lo" --previous paris --user u000012 -w ws
    """
    with user_errors():
        model = _model(workspace)
        queries, scores = model.complete(prefix, k, user_id=user, market=market,
                                         previous_query=previous)
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
