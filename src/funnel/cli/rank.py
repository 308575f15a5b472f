"""``funnel train``: the configured rankers, from the workspace into a new artifact version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from funnel.cli._app import JsonOpt, WorkspaceOpt, app, console, fail, print_json, user_errors
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


def _metrics_table(metrics: dict[str, float], models: tuple[str, ...]) -> Table:
    table = Table(title="funnel train: test = most recent impressions", header_style="bold")
    cols = ["auc", "group_auc", "logloss", "ndcg@10", "ece", "gap_auc", "gap_logloss"]
    table.add_column("model")
    for c in cols:
        table.add_column(c, justify="right")
    rows = list(models) + (["bayes"] if "bayes.auc" in metrics else [])
    for m in rows:
        table.add_row(m, *[
            f"{metrics[f'{m}.{c}']:.4f}" if f"{m}.{c}" in metrics else "" for c in cols
        ])
    return table


MIN_SELECT_POSITIVES = 200
"""Below this many validation positives ``--select`` is reported as untrustworthy."""


def _importance(path: Path) -> dict[str, list[dict[str, object]]]:
    """Every model's full importance list (``rank/importance.json``), for ``--json``."""
    if not path.exists():
        return {}
    models = json.loads(path.read_text())["models"]
    return {name: report["features"] for name, report in models.items()}


@app.command("train")
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
    json_out: JsonOpt = False,
) -> None:
    """Train CTR/LTR rankers on point-in-time impressions and print AUC, logloss and the gap to
    Bayes-optimal.

    Builds one row per impression from the event store (features as of the impression), trains
    on the past, early-stops on the next slice and evaluates on the most recent impressions;
    writes rank/ (models, calibrator, item snapshot, reliability.png) into a new artifact version.

    Example:

        funnel train --workspace ws --models lr,fm,deepfm,gbdt --serve-model deepfm

        funnel train --workspace ws --models gbdt,rf --select --json
    """
    import dataclasses

    from funnel.rank.build import RankConfig, build_rank

    with user_errors():
        ws = Workspace.open(workspace)
        config = RankConfig.from_workspace(ws)
        overrides: dict[str, object] = {}
        if models:
            overrides["models"] = tuple(m.strip() for m in models.split(",") if m.strip())
            if serve_model is None and config.serve_model not in overrides["models"]:
                overrides["serve_model"] = overrides["models"][-1]  # type: ignore[index]
        if serve_model:
            overrides["serve_model"] = serve_model
        if epochs is not None:
            overrides["epochs"] = epochs
        if negative_rate is not None:
            overrides["negative_rate"] = negative_rate
        if select:
            overrides["select"] = True
        try:
            config = dataclasses.replace(config, **overrides)  # type: ignore[arg-type]
        except ValueError as err:
            raise fail(str(err), code=2) from None
        with ws.artifacts.begin() as build:
            metrics = build_rank(
                ws, build, config, verbose=not json_out,
                log=lambda msg: console.print(f"[dim]{msg}[/]"),
            )
            importance = _importance(build.path / "rank" / "importance.json")
            version = build.commit()
    if json_out:
        print_json({**metrics, "artifact": version.name, "importance": importance})
        return
    console.print(_metrics_table(metrics, config.models))
    for name in config.models:
        if f"{name}.select.dropped" in metrics:
            console.print(
                f"{name}: --select dropped {metrics[f'{name}.select.dropped']:.0f} feature(s), "
                f"kept {metrics[f'{name}.select.kept']:.0f}; AUC "
                f"{metrics[f'{name}.select.auc_before']:.4f} -> "
                f"{metrics[f'{name}.select.auc_after']:.4f}; 500 candidates "
                f"{metrics[f'{name}.select.score_500_ms_before']:.2f} -> "
                f"{metrics[f'{name}.select.score_500_ms_after']:.2f} ms"
                + (f" (only {metrics[f'{name}.select.valid_positives']:.0f} positives in the "
                   "validation slice: too few to trust the selection)"
                   if metrics[f"{name}.select.valid_positives"] < MIN_SELECT_POSITIVES else ""))
    if metrics.get("importance.top"):
        console.print(f"top features of {config.serve_model} (held-out AUC drop when shuffled): "
                      f"{metrics['importance.top']} (all: rank/importance.json)")
    console.print(
        f"serving [bold]{config.serve_model}[/], ECE {metrics['serving.ece_raw']:.4f} -> "
        f"{metrics['serving.ece_calibrated']:.4f} after {config.calibration} calibration; "
        f"artifact [bold]{version.name}[/] (rank/reliability.png)"
    )
