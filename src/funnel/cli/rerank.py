"""Re-rank commands: 'funnel rerank-build' and 'funnel rerank-curve'."""

from __future__ import annotations

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
    fail,
    print_json,
    summary_table,
    user_errors,
)
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


@app.command("rerank-build")
def rerank_build(workspace: WorkspaceOpt = DEFAULT_WORKSPACE, as_json: JsonOpt = False) -> None:
    """Save the re-rank pipeline and its measured diversity trade-off into a new artifact.

    Stores the funnel.toml rerank table, per-item attributes, curve.json and tradeoff.png.

    Example: funnel rerank-build --workspace shop
    """
    from funnel.rerank.build import build_rerank

    with user_errors():
        ws = Workspace.open(workspace)
        build = ws.artifacts.begin()
        try:
            with Progress(SpinnerColumn(), TextColumn("[bold]rerank: {task.description}"),
                          TimeElapsedColumn(), console=console, transient=True) as bar:
                task = bar.add_task("loading", total=None)
                metrics = build_rerank(ws, build,
                                       progress=lambda s: bar.update(task, description=s))
            version = build.commit()
        except BaseException:
            build.abort()
            raise
    shown: dict[str, float | int | str] = {
        k: int(v) if float(v).is_integer() else v for k, v in metrics.items()}
    shown["version"] = version.name
    if as_json:
        print_json(shown)
    else:
        console.print(summary_table(f"rerank -> {version.name}", shown))


@app.command("rerank-curve")
def rerank_curve(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    k: Annotated[int, typer.Option("--k", min=1, help="List length shown.")] = 10,
    lists: Annotated[int, typer.Option("--lists", min=1, help="Logged lists to use.")] = 300,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated: dpp,mmr.")] = (
        "dpp,mmr"),
    png: Annotated[Path | None, typer.Option("--png", help="Also write the plot here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the relevance/diversity trade-off curve over the diversity knob.

    Uses the workspace's logged impression lists: NDCG@k vs the logged order and vs true
    p_click when known, intra-list distance, category coverage, brand entropy.

    Example: funnel rerank-curve --workspace shop --k 10 --png tradeoff.png
    """
    from funnel.rerank.build import _item_vectors
    from funnel.rerank.catalog import ItemCatalog
    from funnel.rerank.curve import DEFAULT_KNOBS, logged_lists, plot_tradeoff, tradeoff_curve

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    with user_errors():
        ws = Workspace.open(workspace)
        current = ws.artifacts.current()
        vectors = _item_vectors(current) if current is not None else None
        con = ws.connect(read_only=True)
        try:
            items = con.sql("SELECT * FROM items").to_arrow_table()
            catalog = ItemCatalog.from_items(items, vectors)
            ranked = logged_lists(con, catalog, limit=lists, min_len=min(k, 5))
        finally:
            con.close()
        if not ranked:
            raise fail("no logged impression lists in the event store; run 'funnel generate' "
                       "or ingest events with request_id and position")
        attrs = tuple(a for a in ("category", "brand", "price_band") if a in catalog.attributes)
        points = []
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("trade-off", total=len(chosen) * len(DEFAULT_KNOBS))
            for method in chosen:
                for knob in DEFAULT_KNOBS:
                    bar.update(task, description=f"{method} diversity={knob:g}")
                    points += tradeoff_curve(ranked, methods=(method,), knobs=(knob,), k=k,
                                             attributes=attrs)
                    bar.advance(task)
    if png is not None:
        png.write_bytes(plot_tradeoff(points, title=f"re-rank trade-off (k={k})"))
    if as_json:
        print_json({"k": k, "lists": len(ranked), "points": [p.as_dict() for p in points]})
        return
    table = Table(title=f"re-rank trade-off on {len(ranked)} logged lists (k={k}, "
                        f"{'embeddings' if vectors is not None else 'attributes'})",
                  header_style="bold")
    for col in ("method", "diversity", "NDCG@k kept", "true NDCG@k", "ILD", "cat. coverage",
                "brand entropy", "ms/list"):
        table.add_column(col, justify="right")
    for p in points:
        table.add_row(p.method, f"{p.diversity:g}", f"{p.ndcg:.3f}", f"{p.ndcg_true:.3f}",
                      f"{p.ild:.3f}", f"{p.category_coverage:.3f}", f"{p.brand_entropy:.3f}",
                      f"{p.ms_per_list:.3f}")
    console.print(table)
    console.print(summary_table("rerank-curve", {
        "lists": len(ranked), "k": k, "similarity": "embeddings" if vectors is not None
        else "attributes", "plot": str(png) if png else "-"}))
