"""``funnel train``: an alias of ``funnel build --stages rank`` with [rank] overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from funnel.cli._app import JsonOpt, WorkspaceOpt, app, user_errors
from funnel.cli.build import DetailsOpt, run_stages
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


@app.command("train", hidden=True)
def train(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    models: Annotated[
        str | None,
        typer.Option(help="Comma-separated rankers (lr, fm, ffm, widedeep, deepfm, dcnv2, gbdt, "
                          "lambdamart, rf); default: [rank] models."),
    ] = None,
    serve_model: Annotated[str | None, typer.Option(help="Which model serves.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override [rank] epochs.")] = None,
    negative_rate: Annotated[
        float | None, typer.Option(help="Keep negatives with this probability (corrected).")
    ] = None,
    select: Annotated[
        bool, typer.Option("--select", help="Drop features whose permutation-importance interval "
                                            "includes 0, refit, report AUC and scoring time "
                                            "before/after.")
    ] = False,
    details: DetailsOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train CTR/LTR rankers on point-in-time impressions; report AUC, logloss and the gap to
    Bayes-optimal.

    The same as 'funnel build --stages rank' (each flag sets its [rank] key for this build);
    --json adds every model's feature importance ('rank.importance').

    Example:

        funnel train --workspace ws --models lr,fm,deepfm,gbdt --serve-model deepfm

        funnel train --workspace ws --models gbdt,rf --select --json
    """
    keys: dict[str, Any] = {"serve_model": serve_model, "epochs": epochs,
                            "negative_rate": negative_rate, "select": select or None}
    if models:
        keys["models"] = [m.strip() for m in models.split(",") if m.strip()]
        if serve_model is None:  # keep the configured one if it is trained, else the last
            keys["serve_model"] = _serving(workspace, keys["models"])
    run_stages(workspace, ("rank",), details=details or select, as_json=json_out,
               overrides={"rank": {k: v for k, v in keys.items() if v is not None}})


def _serving(workspace: Path, models: list[str]) -> str | None:
    from funnel.rank.build import RankConfig

    with user_errors():
        configured = RankConfig.from_workspace(Workspace.open(workspace)).serve_model
    return configured if configured in models or not models else models[-1]
