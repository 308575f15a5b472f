"""``funnel embed``: an alias of ``funnel build --stages embeddings`` with [embed] overrides."""

from __future__ import annotations

from typing import Annotated

import typer

from funnel.cli._app import JsonOpt, WorkspaceOpt, app
from funnel.cli.build import DetailsOpt, run_stages
from funnel.workspace import DEFAULT_WORKSPACE


@app.command("embed", hidden=True)
def embed(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    epochs: Annotated[int | None, typer.Option(help="Override [embed] epochs.")] = None,
    dim: Annotated[int | None, typer.Option(help="Override [embed] dim.")] = None,
    threads: Annotated[int | None, typer.Option(help="Override [embed] n_threads.")] = None,
    eval_fraction: Annotated[
        float | None,
        typer.Option("--eval", help="Hold out this last fraction of sessions and report HR@10."),
    ] = None,
    details: DetailsOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train Airbnb-style item embeddings (plus query and type embeddings) from sessions.

    The same as 'funnel build --stages embeddings' (each flag sets its [embed] key for this
    build). Example:

        funnel embed --workspace ws --epochs 10 --eval 0.1
    """
    keys = {"epochs": epochs, "dim": dim, "n_threads": threads, "eval_fraction": eval_fraction}
    run_stages(workspace, ("embeddings",), details=details, as_json=json_out,
               overrides={"embed": {k: v for k, v in keys.items() if v is not None}})
