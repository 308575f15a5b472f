"""``funnel build``: every stage into ONE new artifact version, switched atomically at the end."""

from __future__ import annotations

import shlex
import time
from typing import Annotated, Any

import typer

from funnel.build import BUILDERS, DEFAULT_STAGES, STAGES, run_build, skip_lines
from funnel.cli._app import (
    JsonOpt,
    WorkspaceOpt,
    app,
    console,
    fail,
    print_json,
    say,
    user_errors,
    warn,
)
from funnel.cli.build_summary import importance_rows, is_importance, summary_rows
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


@app.command("build")
def build_command(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    stages: Annotated[
        str,
        typer.Option(
            "--stages",
            help=f"Comma-separated stages, in order. Known: {', '.join(STAGES)}.",
        ),
    ] = ",".join(DEFAULT_STAGES),
    details: Annotated[
        bool, typer.Option("--details", metavar="", help="Print every figure of every stage.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build every stage (embeddings, indexes, rankers, suggestions) into one new artifact version.

    The version becomes 'current' only when every stage succeeded; a failed or interrupted build
    leaves the serving version untouched. A running server picks it up on /admin/reload.

    Example: funnel build --workspace shop
    Example: funnel build --workspace shop --stages catalog,embeddings,recall
    """
    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    unknown = [s for s in chosen if s not in BUILDERS]
    if unknown or not chosen:
        raise fail(f"unknown stage(s) {unknown or stages!r}; choose from {', '.join(STAGES)}",
                   code=2)
    t0 = time.perf_counter()
    with user_errors(), _StageProgress() as progress:
        ws = Workspace.open(workspace)
        version, results = run_build(ws, chosen, on_stage=progress.start)
    if as_json:
        print_json({"version": version, **{f"{s}.{k}": v for s, m in results.items()
                                          for k, v in m.items()}})
        return
    from rich.table import Table

    total = time.perf_counter() - t0
    table = Table(title=f"build {version} (now current) in {total:.1f} s", header_style="bold")
    for column, justify in (("stage", "left"), ("time", "right"), ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for stage, seconds, line in summary_rows(results):
        table.add_row(stage, seconds, line)
    console.print(table)
    if details:
        console.print(_details(results))
        if "rank" in results and importance_rows(results["rank"]):
            console.print(_importance_table(results["rank"]))
    for line in skip_lines(results):
        warn(line)
    where = "" if workspace == DEFAULT_WORKSPACE else f" -w {shlex.quote(str(workspace))}"
    say("next", f"funnel serve{where}   (every figure: funnel build{where} --details, or --json)",
        style="bold")


class _StageProgress:
    """A spinner with the running stage and its elapsed time (on a terminal), and one line per
    finished stage (everywhere: a piped log shows what took how long)."""

    def __enter__(self) -> _StageProgress:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                             TimeElapsedColumn(), console=console, transient=True)
        self._bar.__enter__()
        self._task: Any = None
        self._stage: str | None = None
        self._t0 = 0.0
        return self

    def start(self, stage: str) -> None:
        self._finish()
        self._stage, self._t0 = stage, time.perf_counter()
        self._task = self._bar.add_task(stage, total=None)

    def _finish(self) -> None:
        if self._stage is None:
            return
        self._bar.remove_task(self._task)
        console.print(f"✓ {self._stage} {time.perf_counter() - self._t0:.1f} s", highlight=False)
        self._stage = None

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is None:
            self._finish()
        self._bar.__exit__(kind, *rest)


def _details(results: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="every figure", header_style="bold")
    table.add_column("stage")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for stage, metrics in results.items():
        shown_rows = [(k, v) for k, v in metrics.items()
                      if not k.startswith("skipped") and not is_importance(k)]
        for i, (key, value) in enumerate(shown_rows):
            table.add_row(stage if i == 0 else "", key, _fmt(value))
    return table


def _importance_table(metrics: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="rank: feature importance (held-out AUC drop when the feature's columns "
                        "are shuffled; all: rank/importance.json)", header_style="bold")
    for column, justify in (("model", "left"), ("feature", "left"), ("AUC drop", "right"),
                            ("95% ±", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    last = None
    for model, feature, drop, half in importance_rows(metrics):
        table.add_row(model if model != last else "", feature, f"{drop:+.4f}", f"{half:.4f}")
        last = model
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
