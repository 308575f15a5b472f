"""Try the product without a server: ``funnel search``, ``funnel recommend`` (the engine in
process, on the workspace's current artifact) and ``funnel quarantine`` (the rows ingest kept
out, with the reason)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from funnel.cli._app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    fail,
    print_json,
    stdout,
    user_errors,
)
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from funnel.engine.core import Engine, StageResult

KOpt = Annotated[int, typer.Option("--k", "-k", help="How many items to list.", min=1, max=200)]
_DESCRIBED = ("title", "market", "price")


def _engine(workspace: Path) -> Engine:
    """The workspace's current artifact, loaded as the server loads it (a spinner meanwhile)."""
    from funnel.engine.core import Engine

    ws = Workspace.open(workspace)
    current = ws.artifacts.current()
    if current is None:
        raise fail(f"{ws.root}: no artifact has been built yet; "
                   f"run 'funnel build --workspace {ws.root}' first")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        bar.add_task(f"loading {current.name}", total=None)
        return Engine.load(current)


def _run(engine: Engine, *, query: str, user: str | None, market: str | None,
         k: int) -> StageResult:
    """One request as ``POST /search`` / ``GET /recommend`` runs it, with no online state: a
    fresh server has none either (the user's history reaches the list through the artifact)."""
    import time

    from funnel.features.personalization import STATE_WINDOW, RecentActions

    return engine.run(query=query.strip(), user_id=user, market=market, filters={}, k=k,
                      state=RecentActions(max_len=STATE_WINDOW),
                      now_ms=time.time_ns() // 1_000_000)


def _ask(workspace: Path, *, query: str, user: str | None, market: str | None,
         k: int) -> tuple[str, StageResult, list[dict[str, Any]]]:
    """(artifact version, result, table rows) of one request to the workspace's artifact."""
    with user_errors():
        engine = _engine(workspace)
        try:
            result = _run(engine, query=query, user=user, market=market, k=k)
            return engine.version, result, _rows(engine, result)
        finally:
            engine.close()


def _rows(engine: Engine, result: StageResult) -> list[dict[str, Any]]:
    described = engine.catalog.describe_many(list(result.item_ids), _DESCRIBED)
    return [
        {"rank": i, "item_id": item, "title": about.get("title"), "market": about.get("market"),
         "price": about.get("price"), "score": float(score), "sponsored": kind == "sponsored"}
        for i, (item, score, kind, about) in enumerate(
            zip(result.item_ids, result.scores, result.kinds, described, strict=True), 1)
    ]


def _show(title: str, rows: list[dict[str, Any]], payload: dict[str, Any],
          as_json: bool) -> None:
    if as_json:
        print_json({**payload, "items": rows})
        return
    # the heading is one unwrapped line (it holds a version and a path to copy); Text: "[x]" is
    # not markup
    stdout.print(Text(title), soft_wrap=True)
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("item")
    table.add_column("title", overflow="fold")
    table.add_column("market")
    table.add_column("price", justify="right")
    table.add_column("score", justify="right")
    for row in rows:
        price = "" if row["price"] is None else f"{row['price']:,.0f}"
        title_text = (row["title"] or "") + (" (sponsored)" if row["sponsored"] else "")
        table.add_row(*map(Text, (str(row["rank"]), row["item_id"], title_text,
                                  row["market"] or "", price, f"{row['score']:.4f}")))
    stdout.print(table)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    user: Annotated[str | None, typer.Option(
        "--user", "-u", help="Personalize for this user id.")] = None,
    market: Annotated[str | None, typer.Option(
        "--market", "-m", help="Only this market (default: the one the query names).")] = None,
    k: KOpt = 10,
    as_json: JsonOpt = False,
) -> None:
    """Search the current artifact in process, as POST /search would, and print the list.

    Example: funnel search "amsterdam loft" --user u0000073 --workspace shop
    """
    version, result, rows = _ask(workspace, query=query, user=user, market=market, k=k)
    title = f"{version}: search {query!r}" + (f" for {user}" if user else "")
    if result.match == "none":
        title += " - no item matched; showing popular items instead"
    _show(title, rows, {"query": query, "user": user, "market": market,
                        "version": version, "match": result.match}, as_json)


@app.command()
def recommend(
    user: Annotated[str, typer.Argument(help="The user id to recommend for.")],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    market: Annotated[str | None, typer.Option(
        "--market", "-m", help="Only this market.")] = None,
    k: KOpt = 10,
    as_json: JsonOpt = False,
) -> None:
    """The browse feed for USER from the current artifact, in process, as GET /recommend/USER.

    Example: funnel recommend u0000073 -k 20 --workspace shop
    """
    version, _result, rows = _ask(workspace, query="", user=user, market=market, k=k)
    _show(f"{version}: recommended for {user}", rows,
          {"user": user, "market": market, "version": version}, as_json)


@app.command()
def quarantine(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    limit: Annotated[int, typer.Option(
        "--limit", "-n", help="Rows to print (0: all).", min=0)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The rows ingest quarantined: source file, row, failing field and the reason.

    Example: funnel quarantine --workspace shop --limit 50
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with user_errors():
        ws = Workspace.open(workspace)
        files = sorted(ws.quarantine_dir.glob("*.parquet"))
        tables = [pq.read_table(f) for f in files]
        rows: list[dict[str, Any]] = []
        if tables:
            table = pa.concat_tables(tables, promote_options="default")
            rows = table.to_pylist()
    total = len(rows)
    shown = rows if limit == 0 else rows[:limit]
    if as_json:
        print_json({"workspace": str(ws.root), "total": total,
                    "files": [str(f) for f in files], "rows": shown})
        return
    if not rows:
        console.print(f"no quarantined rows in {ws.root}", soft_wrap=True, highlight=False,
                      markup=False)
        return
    stdout.print(Text(f"quarantined rows in {ws.root}: {total:,}" + (
        f" (first {len(shown):,}; --limit 0 for all)" if len(shown) < total else "")),
        soft_wrap=True)  # one unwrapped line: the path is copied from it
    out = Table()
    out.add_column("file")
    out.add_column("row", justify="right")
    out.add_column("field")
    out.add_column("reason", overflow="fold")
    for row in shown:
        source = row.get("source_file")
        out.add_row(*map(Text, (Path(source).name if source else "",
                                "" if row.get("source_row") is None else str(row["source_row"]),
                                row.get("field") or "", row.get("reason") or "")))
    stdout.print(out)
