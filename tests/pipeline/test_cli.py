"""``funnel pipeline run`` end to end on DuckDB: Parquet in, dt-partitioned Parquet out."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from funnel.cli import app
from funnel.pipeline.engines import DuckDBEngine
from funnel.pipeline.location import join, pyarrow_uri
from funnel.pipeline.run import read_manifest
from funnel.pipeline.stages import PipelineConfig


def test_pipeline_run_writes_partitioned_tables(tmp_path: Path, market):
    src = DuckDBEngine()
    src.register_arrow("events", market["events"])
    src.write_parquet("events", tmp_path / "in" / "events", "ts")
    src.register_arrow("items", market["items"])
    src.write_parquet("items", tmp_path / "in" / "items", None)
    result = CliRunner().invoke(app, [
        "pipeline", "run", "--stages", "covisit,query_stats", "--input", str(tmp_path / "in"),
        "--out", str(tmp_path / "out"), "--json",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["engine"] == "duckdb" and summary["sessions_rows"] == 498
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "_pipeline.json", "covisit", "query_stats", "session_events", "sessions"]
    manifest = read_manifest(tmp_path / "out")  # what a build checks before reading the tables
    assert manifest.stages == ("sessions", "covisit", "query_stats")
    assert manifest.input == str((tmp_path / "in").resolve()) and manifest.engine == "duckdb"
    assert manifest.config == PipelineConfig()
    assert any(p.name.startswith("dt=") for p in (tmp_path / "out" / "sessions").iterdir())
    n = duckdb.sql(f"SELECT count(*) FROM '{tmp_path}/out/covisit/*.parquet'").fetchall()[0][0]
    assert n == summary["covisit_rows"] > 0


def test_pipeline_run_rejects_unknown_stage_and_engine(tmp_path: Path):
    r = CliRunner().invoke(app, ["pipeline", "run", "--stages", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "stages must be a non-empty subset" in r.output
    r = CliRunner().invoke(app, ["pipeline", "run", "--engine", "oracle"])
    assert r.exit_code == 1 and "--engine must be duckdb or spark; got 'oracle'" in r.output


def test_pipeline_run_reads_the_workspace_store_by_default(tmp_path: Path, market):
    from funnel.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    con = ws.connect()
    for name in ("events", "items"):
        con.register("t", market[name])
        con.execute(f"INSERT INTO {name} SELECT * FROM t")
        con.unregister("t")
    con.close()
    r = CliRunner().invoke(app, ["pipeline", "run", "-w", str(ws.root), "--stages", "sessions",
                                 "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sessions_rows"] == 498
    assert (ws.root / "pipeline" / "sessions").is_dir()
    # the store's events travel with the tables, so the directory alone can be built from
    assert read_manifest(ws.root / "pipeline").input == "_input"
    assert (ws.root / "pipeline" / "_input" / "items.parquet").is_file()


def test_locations_keep_urls_and_name_s3_as_pyarrow_does(tmp_path: Path):
    assert join("s3a://bucket/runs/", "covisit") == "s3a://bucket/runs/covisit"
    assert join(tmp_path, "covisit") == tmp_path / "covisit"
    assert pyarrow_uri("s3a://bucket/runs") == pyarrow_uri("s3n://bucket/runs") == \
        "s3://bucket/runs"
    assert pyarrow_uri("hdfs://nn:8020/runs") == "hdfs://nn:8020/runs"


def test_pipeline_run_reads_a_url_input_as_given(tmp_path: Path, market):
    """``--input file:///...`` reaches the engine whole (a Path would fold it to ``file:/``),
    and the manifest records the URL a build will read the events from."""
    src = DuckDBEngine()
    src.register_arrow("events", market["events"])
    src.write_parquet("events", tmp_path / "in" / "events", "ts")
    src.register_arrow("items", market["items"])
    src.write_parquet("items", tmp_path / "in" / "items", None)
    url = f"file://{(tmp_path / 'in').resolve()}"
    result = CliRunner().invoke(app, [
        "pipeline", "run", "--stages", "sessions", "--input", url,
        "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sessions_rows"] == 498
    assert read_manifest(tmp_path / "out").input == url
