"""``funnel pipeline run``: the batch stages on DuckDB (default) or Spark, Parquet out by day."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
from funnel.workspace import CONFIG_FILE, DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from funnel.pipeline.engines import DuckDBEngine, SparkEngine
    from funnel.pipeline.stages import Stage

pipeline_app = typer.Typer(
    help="Batch stages written once, run on DuckDB or Spark (sessions, corpora, covisit, "
    "query_stats, searches, training_set).",
    no_args_is_help=True,
)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("run")
def run(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    engine: Annotated[str, typer.Option(help="duckdb (one machine) or spark.")] = "duckdb",
    spark_master: Annotated[
        str, typer.Option("--spark-master", help="Spark master URL (spark engine only).")
    ] = "local[2]",
    stages: Annotated[
        str, typer.Option(help="Comma-separated stages; dependencies are added.")
    ] = "sessions,corpora,covisit,query_stats,searches,training_set",
    input_dir: Annotated[
        str | None,
        typer.Option("--input", metavar="DIR|URL",
                     help="Directory or URL with events/ (Parquet, dt= partitions allowed) "
                     "and items.parquet or items/. Default: the workspace event store."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(metavar="DIR|URL",
                     help="Output directory, or a URL for the spark engine (one sub-directory "
                     "per table, dt=YYYY-MM-DD/ partitions). Default: WORKSPACE/pipeline."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the batch stages and write partitioned Parquet (and a manifest a build checks).

    The stages take the workspace's settings (session gap, co-visitation) when there is one.

    Example: funnel pipeline run --engine spark --spark-master local[2] --stages sessions,covisit
    --input data/ --out out/

    Example: funnel pipeline run -w shop --engine spark --out tables/ ; funnel build -w shop
    --tables tables/
    """
    from funnel.pipeline.engines import SparkEngine
    from funnel.pipeline.location import as_location
    from funnel.pipeline.run import run_to_directory
    from funnel.pipeline.stages import PipelineConfig, plan

    names = [s.strip() for s in stages.split(",") if s.strip()]
    if engine not in ("duckdb", "spark"):
        raise fail(f"--engine must be duckdb or spark; got {engine!r}")
    try:
        todo = plan(names)
    except ValueError as err:
        raise fail(str(err)) from None
    with user_errors():
        # the workspace holds the events unless --input, the output unless --out, and the
        # settings whenever there is one
        needed = input_dir is None or out is None
        ws = Workspace.open(workspace) if needed or (workspace / CONFIG_FILE).exists() else None
        if out is not None:
            out_dir = as_location(out)
        else:
            assert ws is not None  # opened above whenever --out is not given
            out_dir = ws.root / "pipeline"
        config = PipelineConfig()
        if ws is not None:
            from funnel.build_tables import workspace_pipeline_config

            config = workspace_pipeline_config(ws)
        source = None if input_dir is None else as_location(input_dir)
        eng = _engine(engine, spark_master)
        try:
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                          transient=True) as progress:
                task = progress.add_task(f"{engine}: stages", total=len(todo))

                def step(stage: Stage, rows: int, seconds: float) -> None:
                    progress.update(task, advance=1, description=f"{engine}: {stage.output} done")

                summary = run_to_directory(
                    eng, names, out_dir, config, on_stage=step, input_dir=source,
                    store=None if source is not None or ws is None else ws.store_path)
        finally:
            eng.close()
            if isinstance(eng, SparkEngine):
                eng.spark.stop()
    payload: dict[str, object] = {"engine": engine, **summary, "out": str(out_dir)}
    if as_json:
        print_json(payload)
    else:
        console.print(summary_table(f"pipeline ({engine})", payload))


def _engine(name: str, master: str) -> DuckDBEngine | SparkEngine:
    from funnel.pipeline.engines import DuckDBEngine, SparkEngine, spark_session

    if name == "duckdb":
        return DuckDBEngine()
    return SparkEngine(spark_session(master))
