"""Where a build reads its tables: the event store, or the batch pipeline's Parquet.

``funnel build`` reads sessions, co-visitation pairs, searches and the point-in-time training
rows from the workspace's event store by default, computed there by the pipeline's one SQL
definition (``funnel.pipeline.stages``) on DuckDB. ``--tables DIR`` builds from a finished
pipeline run instead (``funnel pipeline run --engine spark --out DIR``, any engine), and
``--engine spark`` runs that pipeline first. Either way the stages read through a DuckDB
database loaded from the run's Parquet, so each stage has one reader and the artifact cannot
depend on the engine.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from funnel.exceptions import ConfigError, DataFileError
from funnel.pipeline.engines import parquet_select
from funnel.pipeline.location import Location, is_url, join
from funnel.pipeline.run import MARKER, Manifest, input_paths, read_manifest
from funnel.pipeline.stages import PipelineConfig
from funnel.workspace import Workspace

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BUILD_STAGES = ("sessions", "covisit", "searches", "training_set")
"""The pipeline stages whose outputs a build reads."""

ORDER = {"events": "ts, event_id", "sessions": "user_id, start_ts, session_id",
         "session_events": "event_id"}
"""Row order of the loaded tables: the event store's, so readers that keep it see the same."""

TABLES_DIR = ".build-tables"
"""Workspace sub-directory holding a build's tables database (removed after the build)."""


def workspace_pipeline_config(ws: Workspace) -> PipelineConfig:
    """The pipeline parameters this workspace's funnel.toml implies: the session gap of
    ``[sessions]``, co-visitation as ``[recall]`` fits it, the search attribution window of
    ``[suggest]``, training-row windows of the rank stage."""
    from funnel.config import section
    from funnel.features.training_set import TrainingSetConfig
    from funnel.pipeline.sessions import SessionConfig
    from funnel.recall.build import RecallConfig
    from funnel.suggest.model import SuggestConfig

    config = ws.config()
    training = TrainingSetConfig()
    base = PipelineConfig(gap_minutes=float(SessionConfig.of(config).gap_minutes),
                          click_window_minutes=training.click_window_minutes,
                          booking_window_hours=training.booking_window_hours,
                          attribution_minutes=float(
                              section(config, "suggest", SuggestConfig).attribution_minutes))
    return section(config, "recall", RecallConfig).covisitation().pipeline_config(base)


def check_run(tables: Location, expected: PipelineConfig, workspace: Path) -> Manifest:
    """The run's manifest; refuses a pipeline run that lacks a stage the build reads or was
    computed with other parameters than the workspace's (one line each, with the fix)."""
    manifest = read_manifest(tables)
    missing = [s for s in BUILD_STAGES if s not in manifest.stages]
    rerun = (f"re-run 'funnel pipeline run -w {workspace} --stages {','.join(BUILD_STAGES)} "
             f"--out {tables}' (with --input for events outside the workspace)")
    if missing:
        raise DataFileError(str(tables), f"the pipeline run lacks stage(s) {missing}; {rerun}")
    for f in fields(PipelineConfig):
        got, want = getattr(manifest.config, f.name), getattr(expected, f.name)
        if got != want:
            raise ConfigError(f"{tables}: the pipeline ran with {f.name} = {got}, the workspace's "
                              f"configuration gives {want}; {rerun}")
    return manifest


@contextmanager
def tables_workspace(ws: Workspace, tables: Location) -> Iterator[Workspace]:
    """``ws`` reading a pipeline run's tables: its events and items and every output, loaded
    into a database under the workspace (removed on exit).

    Loaded, not viewed: the stages query events hundreds of times, and a view re-reads and
    re-sorts the Parquet each time (a 20k-event build took 81 s over views, 19 s from its
    store)."""
    tables = tables if is_url(tables) else Path(tables).resolve()
    manifest = check_run(tables, workspace_pipeline_config(ws), ws.root)
    here = ws.root / TABLES_DIR
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    db = here / "tables.duckdb"
    try:
        con = duckdb.connect(str(db))
        try:
            sources = {**input_paths(manifest.input_dir(tables), extra=True),
                       **{name: join(tables, name) for name in manifest.outputs}}
            for name, path in sources.items():
                order = f" ORDER BY {ORDER[name]}" if name in ORDER else ""
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM ({parquet_select(con, path)})"
                            f"{order}")
            con.execute(f"CREATE TABLE {MARKER} AS SELECT unnest(?::VARCHAR[]) AS name",
                        [list(manifest.outputs)])
        finally:
            con.close()
        yield replace(ws, store_file=db)
    finally:
        shutil.rmtree(here, ignore_errors=True)


def spark_tables(ws: Workspace, out: Path, master: str = "local[2]", *,
                 spark: SparkSession | None = None) -> Path:
    """Run the stages a build reads on Spark (``master``, or the given ``spark`` session, left
    running) from the workspace's event store into ``out``; returns ``out``, ready for
    :func:`tables_workspace`."""
    from funnel.pipeline.engines import SparkEngine, spark_session
    from funnel.pipeline.run import run_to_directory

    engine = SparkEngine(spark if spark is not None else spark_session(master))
    try:
        run_to_directory(engine, BUILD_STAGES, out, workspace_pipeline_config(ws),
                         store=ws.store_path)
    finally:
        engine.close()
        if spark is None:
            engine.spark.stop()
    return out
