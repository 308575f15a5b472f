"""``funnel pipeline run``: the batch stages on DuckDB (default) or Spark, Parquet out by day."""

from __future__ import annotations

import tempfile
from pathlib import Path
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
from funnel.workspace import DEFAULT_WORKSPACE, Workspace

if TYPE_CHECKING:
    from funnel.pipeline.engines import DuckDBEngine, SparkEngine
    from funnel.pipeline.stages import Stage

pipeline_app = typer.Typer(
    help="Batch stages written once, run on DuckDB or Spark (sessions, corpora, covisit, "
    "query_stats, training_set).",
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
    ] = "sessions,corpora,covisit,query_stats,training_set",
    input_dir: Annotated[
        Path | None,
        typer.Option("--input", help="Directory with events/ (Parquet, dt= partitions allowed) "
                     "and items.parquet or items/. Default: the workspace event store."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (one sub-directory per table, dt=YYYY-MM-DD/ "
                     "partitions). Default: WORKSPACE/pipeline."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the batch stages and write partitioned Parquet.

    Example: funnel pipeline run --engine spark --spark-master local[2] --stages sessions,covisit
    --input data/ --out out/
    """
    from funnel.pipeline.engines import SparkEngine
    from funnel.pipeline.run import load_inputs, run_pipeline
    from funnel.pipeline.stages import plan

    names = [s.strip() for s in stages.split(",") if s.strip()]
    if engine not in ("duckdb", "spark"):
        raise fail(f"--engine must be duckdb or spark; got {engine!r}")
    try:
        todo = plan(names)
    except ValueError as err:
        raise fail(str(err)) from None
    with user_errors(), tempfile.TemporaryDirectory(prefix="funnel-pipeline-") as tmp:
        ws = Workspace.open(workspace) if (input_dir is None or out is None) else None
        if out is not None:
            out_dir = out
        else:
            assert ws is not None  # opened above whenever --out is not given
            out_dir = ws.root / "pipeline"
        source = input_dir if input_dir is not None else _export_store(ws, Path(tmp))
        eng = _engine(engine, spark_master)
        load_inputs(eng, source)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task(f"{engine}: stages", total=len(todo))

            def step(stage: Stage, rows: int, seconds: float) -> None:
                progress.update(task, advance=1, description=f"{engine}: {stage.output} done")

            summary = run_pipeline(eng, names, out=out_dir, on_stage=step)
        eng.close()
        if isinstance(eng, SparkEngine):
            eng.spark.stop()
    payload: dict[str, object] = {"engine": engine, **summary, "out": str(out_dir)}
    if as_json:
        print_json(payload)
    else:
        console.print(summary_table(f"pipeline ({engine})", payload))


def _export_store(ws: Workspace | None, tmp: Path) -> Path:
    """The workspace's events (by day) and items as Parquet, the engines' common input."""
    import duckdb

    if ws is None:
        raise ValueError("--input or --workspace is needed to find the events")
    if not ws.store_path.exists():
        raise FileNotFoundError(f"{ws.store_path}: no event store; run 'funnel ingest' first")
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute(f"ATTACH '{ws.store_path}' AS store (READ_ONLY)")
    con.execute(f"COPY (SELECT *, strftime(ts, '%Y-%m-%d') AS dt FROM store.events) "
                f"TO '{tmp / 'events'}' (FORMAT PARQUET, PARTITION_BY (dt))")
    con.execute(f"COPY store.items TO '{tmp / 'items.parquet'}' (FORMAT PARQUET)")
    con.close()
    return tmp


def _engine(name: str, master: str) -> DuckDBEngine | SparkEngine:
    from funnel.pipeline.engines import DuckDBEngine, SparkEngine, spark_session

    if name == "duckdb":
        return DuckDBEngine()
    return SparkEngine(spark_session(master))
