"""Generative recall from the shell: the DiffRec-split comparison behind ``funnel evaluate
recall --split`` (old name ``evaluate-recall``) and ``train-generative`` (= ``funnel build
--stages generative``), both kept as hidden aliases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from funnel.cli._app import JsonOpt, WorkspaceOpt, app, console, summary_table, user_errors
from funnel.cli.build import DetailsOpt, run_stages
from funnel.workspace import DEFAULT_WORKSPACE


def split_options_used(*, quick: bool, configs: int | None, epochs: int | None,
                       dreamrec: bool) -> str:
    """The ``--split``-only options given (``""`` if none), for the error without --split."""
    used = [name for name, on in (("--quick", quick), ("--configs", configs is not None),
                                  ("--epochs", epochs is not None),
                                  ("--no-dreamrec", not dreamrec)) if on]
    return "/".join(used)


@app.command("evaluate-recall", hidden=True)
def evaluate_recall(
    split: Annotated[Path, typer.Option(
        "--split", help="DiffRec split directory: train_list.npy, valid_list.npy, test_list.npy "
        "(\\[user, item] integer pairs).")],
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Write the flat result object (recall20_ease, recall20_ddim_10, ...) here."
    )] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", metavar="", help="2 configs x 20 epochs per method instead of 4 x 60.")] = False,
    configs: Annotated[int | None, typer.Option(
        "--configs", min=1, max=4, help="Override: configurations tried per method.")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", min=1, help="Override: training epochs of every neural method.")] = None,
    dreamrec: Annotated[bool, typer.Option(
        "--dreamrec/--no-dreamrec", metavar="",
        help="Also run the embedding-space variant.")] = True,
) -> None:
    """The old name of 'funnel evaluate recall --split'.

    Example: funnel evaluate recall --split data/ml-1m_clean --json ml1m.json --quick
    """
    compare_on_split(split, json_path=json_path, quick=quick, configs=configs, epochs=epochs,
                     dreamrec=dreamrec)


def compare_on_split(split: Path, *, json_path: Path | None, quick: bool, configs: int | None,
                     epochs: int | None, dreamrec: bool) -> None:
    """Recall@20 / NDCG@20 of EASE, item-kNN, RP3beta, MultVAE and every generative sampler
    (the plain samplers and the ones that start from the best baseline) on a split.

    Every method is tuned with the same budget on the valid part, then scored on test with the
    train histories as input and train + valid items excluded (the DiffRec protocol).
    """
    from dataclasses import replace

    import torch

    from funnel.generative.evaluate import (
        BASELINES,
        DREAMREC_TABLE,
        PRIOR_TABLE,
        SAMPLER_TABLE,
        Budget,
        best_vs_baseline,
        compare,
        compare_dreamrec,
        table_rows,
        target_check,
    )
    from funnel.generative.splits import load_diffrec_split

    with user_errors():
        data = load_diffrec_split(split)
    budget = Budget.quick() if quick else Budget()
    budget = replace(budget, configs=configs or budget.configs, epochs=epochs or budget.epochs)
    torch.manual_seed(0)
    total = 9 * budget.configs + len(SAMPLER_TABLE) + len(PRIOR_TABLE)
    total += (1 + budget.configs + len(DREAMREC_TABLE)) if dreamrec else 0
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("evaluating", total=total)

        def step(message: str) -> None:
            bar.update(task, description=message, advance=1)

        result = compare(data, budget, progress=step)
        if dreamrec:
            result.update(compare_dreamrec(data, budget, progress=step))
            result["best_generative_vs_best_baseline"] = best_vs_baseline(result)[1]
        bar.update(task, completed=total, description="done")
    bar_name = max((b for b in BASELINES if f"recall20_{b}" in result),
                   key=lambda b: result[f"recall20_{b}"])
    best_baseline = result[f"recall20_{bar_name}"]
    table = Table(title=f"{split} ({data.n_users:,} users, {data.n_items:,} items)",
                  header_style="bold")
    for col in ("method", "Recall@20", "NDCG@20", "ms / user", f"vs {bar_name}"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for name, r, n, ms in table_rows(result):
        table.add_row(name, f"{r:.4f}", f"{n:.4f}", "-" if ms is None else f"{ms:.3f}",
                      f"{r / best_baseline:.3f}")
    console.print(table)
    best, check = target_check(result)
    result.update(check)
    console.print(summary_table("fast sampler vs DDPM-100", [
        ("best <=10-step sampler", best),
        ("Recall@20 ratio to DDPM-100", check["fast_sampler_recall_ratio"]),
        ("speed-up over DDPM-100", check["fast_sampler_speedup"]),
        ("Recall@20 ratio to EASE", check["diffusion_vs_ease_recall_ratio"]),
    ]))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2, sort_keys=True))
        console.print(f"wrote {json_path}", highlight=False, soft_wrap=True)


@app.command("train-generative", hidden=True)
def train_generative(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="Override [generative] epochs from funnel.toml.")] = None,
    details: DetailsOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the embedding-space generative recall (DreamRec) into a new artifact version:
    the same as 'funnel build --stages generative'.

    Example: funnel train-generative --workspace shop --epochs 5
    """
    keys = {"epochs": epochs} if epochs is not None else {}
    run_stages(workspace, ("generative",), overrides={"generative": keys}, details=details,
               as_json=json_out)
