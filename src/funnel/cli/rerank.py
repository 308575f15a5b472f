"""``funnel evaluate rerank``: the diversity trade-off; and the old names as hidden aliases,
``rerank-curve`` and ``rerank-build`` (= ``funnel build --stages rerank``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
from funnel.cli.build import DetailsOpt, run_stages
from funnel.cli.evaluate import evaluate_app
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


@app.command("rerank-build", hidden=True)
def rerank_build(workspace: WorkspaceOpt = DEFAULT_WORKSPACE, details: DetailsOpt = False,
                 as_json: JsonOpt = False) -> None:
    """Save the re-rank pipeline and its measured diversity trade-off into a new artifact: the
    same as 'funnel build --stages rerank'.

    Example: funnel rerank-build --workspace shop
    """
    run_stages(workspace, ("rerank",), details=details, as_json=as_json)


KOpt = Annotated[int, typer.Option("--k", min=1, help="List length shown.")]
ListsOpt = Annotated[int, typer.Option("--lists", min=1, help="Logged lists to use.")]
MethodsOpt = Annotated[str, typer.Option("--methods", help="Comma-separated: dpp,mmr.")]
PngOpt = Annotated[Path | None, typer.Option("--png", help="Also write the plot here.")]


@evaluate_app.command("rerank")
def evaluate_rerank(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    k: KOpt = 10,
    lists: ListsOpt = 300,
    methods: MethodsOpt = "dpp,mmr",
    png: PngOpt = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Also write the curve as one JSON object to this file.")] = None,
) -> None:
    """The relevance/diversity trade-off of the re-ranker over its diversity knob.

    Uses the workspace's logged impression lists: NDCG@k vs the logged order and vs true
    p_click when known, intra-list distance, category coverage, brand entropy.

    Example: funnel evaluate rerank --workspace shop --k 10 --png tradeoff.png
    """
    payload = _curve(workspace, k=k, lists=lists, methods=methods, png=png)
    _print_curve(payload, png)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(payload, indent=1, sort_keys=True))


@app.command("rerank-curve", hidden=True)
def rerank_curve(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    k: KOpt = 10,
    lists: ListsOpt = 300,
    methods: MethodsOpt = "dpp,mmr",
    png: PngOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The old name of 'funnel evaluate rerank' (--json prints the curve to stdout).

    Example: funnel evaluate rerank --workspace shop --k 10 --png tradeoff.png
    """
    payload = _curve(workspace, k=k, lists=lists, methods=methods, png=png)
    if as_json:
        print_json(payload)
    else:
        _print_curve(payload, png)


def _curve(workspace: Path, *, k: int, lists: int, methods: str,
           png: Path | None) -> dict[str, Any]:
    """``{"k", "lists", "similarity", "points"}`` over the logged lists (and the plot)."""
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
    return {"k": k, "lists": len(ranked), "points": [p.as_dict() for p in points],
            "similarity": "embeddings" if vectors is not None else "attributes"}


def _print_curve(payload: dict[str, Any], png: Path | None) -> None:
    table = Table(title=f"re-rank trade-off on {payload['lists']} logged lists "
                        f"(k={payload['k']}, {payload['similarity']})", header_style="bold")
    for col in ("method", "diversity", "NDCG@k kept", "true NDCG@k", "ILD", "cat. coverage",
                "brand entropy", "ms/list"):
        table.add_column(col, justify="right")
    for p in payload["points"]:
        table.add_row(p["method"], f"{p['diversity']:g}", f"{p['ndcg']:.3f}",
                      f"{p['ndcg_true']:.3f}", f"{p['ild']:.3f}",
                      f"{p['category_coverage']:.3f}", f"{p['brand_entropy']:.3f}",
                      f"{p['ms_per_list']:.3f}")
    console.print(table)
    console.print(summary_table("rerank curve", {
        "lists": payload["lists"], "k": payload["k"], "similarity": payload["similarity"],
        "plot": str(png) if png else "-"}))
