"""``funnel embed``: item, query and user/item-type embeddings from the workspace's sessions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from funnel.cli._app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    print_json,
    summary_table,
    user_errors,
)
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


@app.command("embed")
def embed(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    epochs: Annotated[int | None, typer.Option(help="Override [embed] epochs.")] = None,
    dim: Annotated[int | None, typer.Option(help="Override [embed] dim.")] = None,
    threads: Annotated[int | None, typer.Option(help="Override [embed] n_threads.")] = None,
    eval_fraction: Annotated[
        float | None,
        typer.Option("--eval", help="Hold out this last fraction of sessions and report HR@10."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Train Airbnb-style item embeddings (plus query and type embeddings) from sessions.

    Reads the 'sessions' and 'items' tables, trains skip-gram with the booked item as global
    context and same-market negatives, and writes a new artifact version whose 'embeddings/'
    holds item/query/type vectors. Example:

        funnel embed --workspace ws --epochs 10 --eval 0.1
    """
    import dataclasses

    from funnel.embed.build import EmbedConfig, build_embeddings

    with user_errors():
        ws = Workspace.open(workspace)
        config = EmbedConfig.from_workspace(ws)
        overrides = {k: v for k, v in {"epochs": epochs, "dim": dim, "n_threads": threads,
                                       "eval_fraction": eval_fraction}.items() if v is not None}
        config = dataclasses.replace(config, **overrides)
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                      "{task.total} epochs"), TimeElapsedColumn(), console=console) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(f"{stage} embeddings", total=total)
                bar.update(tasks[stage], completed=done)

            with ws.artifacts.begin() as build:
                metrics = build_embeddings(ws, build, config, progress=progress)
                version = build.commit()
    if json_out:
        print_json({**metrics, "artifact": str(version)})
    shown = {k: int(v) if float(v).is_integer() else v for k, v in metrics.items()}
    console.print(summary_table("funnel embed", {**shown, "artifact": version.name}))
