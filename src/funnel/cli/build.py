"""``funnel build``: every stage into ONE new artifact version, switched atomically at the end.

The one-stage commands (``funnel embed``, ``index``, ``train``, ``rerank-build``, ``suggest
build``, ``train-generative``) are aliases of :func:`run_stages`: their flags become
``funnel.toml`` overrides for that one build, so there is one build path and one summary.
"""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    workspace_flag,
)
from funnel.cli.build_summary import importance_rows, is_importance, summary_rows
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from rich.console import JustifyMethod

Overrides = dict[str, dict[str, Any]]
"""``{table: {key: value}}``: funnel.toml keys replaced for one build (the file is untouched)."""

DetailsOpt = Annotated[bool, typer.Option(
    "--details", metavar="", help="Print every figure of every stage.")]

ALIASES = {"embed": "embeddings", "index": "recall", "train": "rank", "rerank-build": "rerank",
           "suggest build": "suggest", "train-generative": "generative"}
"""Old one-stage command -> the stage it builds (listed in ``funnel build --help``)."""


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
    settings: Annotated[list[str] | None, typer.Option(
        "--set", metavar="TABLE.KEY=VALUE",
        help="Override one funnel.toml key for this build only (repeatable; VALUE is TOML, "
             "bare words are strings).")] = None,
    details: DetailsOpt = False,
    as_json: JsonOpt = False,
    tables: Annotated[str | None, typer.Option(
        "--tables", metavar="DIR|URL",
        help="Read sessions, co-visitation pairs and training rows from a finished "
             "'funnel pipeline run --out DIR' (DuckDB or Spark; a directory or a URL such as "
             "s3://bucket/run) instead of the event store.")
    ] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="duckdb: the tables from the event store (default); spark: run the "
                         "pipeline on Spark into WORKSPACE/pipeline first, then build from it.")
    ] = "duckdb",
    spark_master: Annotated[str, typer.Option(
        "--spark-master", metavar="URL", help="Spark master for --engine spark.")
    ] = "local[2]",
) -> None:
    """Build every stage (embeddings, indexes, rankers, suggestions) into one new artifact version.

    The version becomes 'current' only when every stage succeeded; a failed or interrupted build
    leaves the serving version untouched. A running server picks it up on /admin/reload.

    The old one-stage commands are aliases: 'funnel embed' = --stages embeddings, 'index' =
    recall, 'train' = rank, 'rerank-build' = rerank, 'suggest build' = suggest,
    'train-generative' = generative.

    Example: funnel build --workspace shop

    Example: funnel build --workspace shop --stages catalog,embeddings,recall

    Example: funnel build --workspace shop --stages rank --set rank.epochs=2

    Example: funnel build --workspace shop --engine spark --spark-master spark://host:7077
    """
    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    unknown = [s for s in chosen if s not in BUILDERS]
    if unknown or not chosen:
        raise fail(f"unknown stage(s) {unknown or stages!r}; choose from {', '.join(STAGES)}",
                   code=2)
    if engine not in ("duckdb", "spark"):
        raise fail(f"--engine must be duckdb or spark; got {engine!r}", code=2)
    if engine == "spark" and tables is not None:
        raise fail("--engine spark computes the tables; --tables reads finished ones: give one",
                   code=2)
    if engine == "spark":
        from funnel.build_tables import spark_tables

        with user_errors():
            ws = Workspace.open(workspace)
            say("spark", f"{spark_master}: sessions, co-visitation and training rows into "
                f"{ws.root / 'pipeline'}")
            tables = str(spark_tables(ws, ws.root / "pipeline", spark_master))
    run_stages(workspace, chosen, overrides=parse_settings(settings or []), details=details,
               as_json=as_json, tables=tables)


def parse_settings(settings: list[str]) -> Overrides:
    """``["rank.epochs=2", "rank.serve_model=gbdt"]`` -> ``{"rank": {"epochs": 2, ...}}``."""
    out: Overrides = {}
    for text in settings:
        name, sep, raw = text.partition("=")
        table, dot, key = name.strip().partition(".")
        if not (sep and dot and table and key):
            raise fail(f"--set {text!r}: expected TABLE.KEY=VALUE, e.g. --set rank.epochs=2",
                       code=2)
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()  # a bare word: gbdt, not "gbdt"
        out.setdefault(table, {})[key.strip()] = value
    return out


@dataclasses.dataclass(frozen=True)
class OverriddenWorkspace(Workspace):
    """The workspace as the stages see it during one build: funnel.toml plus the overrides."""

    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict, hash=False, compare=False)

    def config(self) -> dict[str, Any]:
        raw = super().config()
        return {**raw, **{table: {**raw.get(table, {}), **keys}
                          for table, keys in self.overrides.items()}}


def _check_overrides(ws: OverriddenWorkspace) -> None:
    """Refuse a bad override before any stage runs (a typo must not cost a 3-minute build)."""
    if not ws.overrides:
        return
    from funnel.config import section
    from funnel.config_template import stage_config_classes

    classes = {name: cls for name, cls, _ in stage_config_classes()}
    for table in ws.overrides:
        if table not in classes:
            raise fail(f"--set {table}.*: no [{table}] table; choose from "
                       f"{', '.join(classes)}", code=2)
        try:
            section(ws.config(), table, classes[table])
        except (ValueError, TypeError) as err:
            raise fail(str(err), code=2) from None


def run_stages(workspace: Path, stages: tuple[str, ...], *, overrides: Overrides | None = None,
               details: bool = False, as_json: bool = False,
               tables: Path | str | None = None) -> None:
    """Build ``stages`` (with ``overrides``) and print the summary and the next command: what
    ``funnel build`` and every one-stage alias run."""
    t0 = time.perf_counter()
    with user_errors():
        given = {table: keys for table, keys in (overrides or {}).items() if keys}
        ws = OverriddenWorkspace(Workspace.open(workspace).root, overrides=given)
        _check_overrides(ws)
        with _StageProgress() as progress:
            version, results = run_build(ws, stages, on_stage=progress.start,
                                         tables=tables)
    if as_json:
        payload = {"version": version, **{f"{s}.{k}": v for s, m in results.items()
                                          for k, v in m.items()}}
        if "rank" in results:
            payload["rank.importance"] = _importance(ws.artifacts.root / version)
        print_json(payload)
        return
    _print_summary(workspace, version, results, time.perf_counter() - t0, details=details)


MIN_SELECT_POSITIVES = 200
"""Below this many validation positives a ``rank.select`` result is reported as untrustworthy."""


def _select_doubts(rank: Mapping[str, Any]) -> list[str]:
    """One line per model whose feature selection rests on too few validation positives."""
    suffix = ".select.valid_positives"
    return [f"{key[:-len(suffix)]}: feature selection judged on only {value:.0f} validation "
            f"positives (< {MIN_SELECT_POSITIVES}); too few to trust it"
            for key, value in rank.items() if key.endswith(suffix)
            and value < MIN_SELECT_POSITIVES]


def _importance(version_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every model's full feature-importance list (``rank/importance.json``), for ``--json``."""
    path = version_dir / "rank" / "importance.json"
    if not path.exists():
        return {}
    models = json.loads(path.read_text())["models"]
    return {name: report["features"] for name, report in models.items()}


def _print_summary(workspace: Path, version: str, results: dict[str, dict[str, Any]],
                   total: float, *, details: bool) -> None:
    from rich.table import Table

    table = Table(title=f"build {version} (now current) in {total:.1f} s", header_style="bold")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("stage", "left"), ("time", "right"), ("", "left"))
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for stage, seconds, line in summary_rows(results):
        table.add_row(stage, seconds, line)
    console.print(table)
    if details:
        console.print(_details(results))
        if "rank" in results and importance_rows(results["rank"]):
            console.print(_importance_table(results["rank"]))
    for line in [*skip_lines(results), *_select_doubts(results.get("rank", {}))]:
        warn(line)
    where = workspace_flag(workspace)
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
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("model", "left"), ("feature", "left"), ("AUC drop", "right"), ("95% ±", "right"))
    for column, justify in columns:
        table.add_column(column, justify=justify)
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
