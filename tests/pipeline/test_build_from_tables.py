"""``funnel build --tables`` / ``--engine spark``: an artifact built from a pipeline run's
Parquet equals the one built from the event store.

With single-threaded embedding training every index is byte-identical: the embeddings, the
vector index, co-visitation, popularity, the catalog. The rankers train with threads, so their
figures are compared within the issue's tolerance (AUC within 0.005).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnel.artifacts import differing_files
from funnel.build import run_build, synthetic_workspace
from funnel.build_tables import (
    BUILD_STAGES,
    TABLES_DIR,
    spark_tables,
    tables_workspace,
    workspace_pipeline_config,
)
from funnel.cli import app
from funnel.exceptions import ConfigError, DataFileError
from funnel.pipeline.engines import DuckDBEngine
from funnel.pipeline.run import MANIFEST, run_to_directory
from funnel.pipeline.stages import PipelineConfig
from funnel.workspace import Workspace

pytestmark = pytest.mark.slow

STAGES = ("catalog", "embeddings", "recall", "rank", "suggest")
IDENTICAL = ("catalog", "embeddings", "recall/covisit", "recall/popularity", "recall/vector",
             "recall/cooc", "recall/sr", "recall/sknn", "recall/query_items", "suggest")
TIMINGS = {"embeddings/config.json", "suggest/config.json"}  # same models; seconds differ


@pytest.fixture(scope="module")
def store_build(tmp_path_factory) -> tuple[Workspace, Path, dict]:
    root = tmp_path_factory.mktemp("tables") / "ws"
    ws = synthetic_workspace(root, events=20_000, seed=3, stages=())
    with ws.config_path.open("a") as f:  # Hogwild threads reorder updates: one thread
        f.write('\n[embed]\nn_threads = 1\neval_fraction = 0.2\n\n'
                '[rank]\nmodels = ["lr", "deepfm"]\n')
    version, results = run_build(ws, STAGES)
    return ws, ws.artifacts.root / version, results


def assert_same_artifact(store: tuple[Workspace, Path, dict], version: str,
                         results: dict) -> None:
    ws, a, expected = store
    b = ws.artifacts.root / version
    assert (a / "recall" / "covisit" / "neighbors.npz").is_file()
    assert differing_files(a, b, IDENTICAL, TIMINGS) == []
    for model in ("lr", "deepfm"):
        assert results["rank"][f"{model}.auc"] == pytest.approx(
            expected["rank"][f"{model}.auc"], abs=0.005)
    hr = "next_click_hr@10"
    assert results["embeddings"][hr] == expected["embeddings"][hr]  # identical vectors
    assert not (ws.root / TABLES_DIR).exists()  # the loaded copy is gone


def test_build_from_a_duckdb_pipeline_run_equals_the_store_build(store_build, tmp_path):
    ws, _, _ = store_build
    out = tmp_path / "run"
    run_to_directory(DuckDBEngine(), BUILD_STAGES, out, workspace_pipeline_config(ws),
                     store=ws.store_path)
    version, results = run_build(ws, STAGES, tables=out)
    assert_same_artifact(store_build, version, results)


@pytest.mark.spark
def test_build_from_spark_tables_equals_the_store_build(store_build, spark, tmp_path):
    ws, _, _ = store_build
    out = spark_tables(ws, tmp_path / "spark", spark=spark)
    assert json.loads((out / MANIFEST).read_text())["engine"] == "spark"
    version, results = run_build(ws, STAGES, tables=out)
    assert_same_artifact(store_build, version, results)


def test_tables_are_read_from_a_url(store_build, tmp_path):
    """A run's directory given as a URL (here ``file://``; ``s3://`` and ``hdfs://`` go through
    the same pyarrow file systems) loads the same rows as the event store holds."""
    ws, _, _ = store_build
    out = tmp_path / "run"
    run_to_directory(DuckDBEngine(), BUILD_STAGES, out, workspace_pipeline_config(ws),
                     store=ws.store_path)
    count = "SELECT count(*), count(DISTINCT event_id) FROM events"
    with ws.connect(read_only=True) as con:
        expected = con.execute(count).fetchall()
    with tables_workspace(ws, f"file://{out.resolve()}") as from_url:
        with from_url.connect(read_only=True) as con:
            assert con.execute(count).fetchall() == expected
            assert con.execute("SELECT count(*) FROM covisit").fetchall()[0][0] > 1000


def test_a_run_with_other_settings_or_stages_is_refused(store_build, tmp_path):
    ws, _, _ = store_build
    out = tmp_path / "run"
    with pytest.raises(DataFileError, match="no pipeline manifest, so DIR is not a pipeline run"):
        run_build(ws, ("recall",), tables=out)
    other = PipelineConfig(**{**vars(workspace_pipeline_config(ws)), "window": 5})
    run_to_directory(DuckDBEngine(), BUILD_STAGES, out, other, store=ws.store_path)
    with pytest.raises(ConfigError) as err:
        run_build(ws, ("recall",), tables=out)
    assert str(err.value) == (
        f"{out.resolve()}: the pipeline ran with window = 5, the workspace's configuration gives "
        f"3; re-run 'funnel pipeline run -w {ws.root} --stages sessions,covisit,searches,"
        f"training_set --out {out.resolve()}' (with --input for events outside the workspace)")
    run_to_directory(DuckDBEngine(), ("covisit",), out, workspace_pipeline_config(ws),
                     store=ws.store_path)
    with pytest.raises(DataFileError, match=r"lacks stage\(s\) \['searches', 'training_set'\]"):
        with tables_workspace(ws, out):
            pass


def test_cli_builds_from_tables_and_refuses_two_sources(store_build, tmp_path):
    ws, _, _ = store_build
    r = CliRunner().invoke(app, ["pipeline", "run", "-w", str(ws.root), "--out",
                                 str(tmp_path / "run"), "--stages", ",".join(BUILD_STAGES)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["build", "-w", str(ws.root), "--stages", "catalog,recall",
                                 "--tables", str(tmp_path / "run"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["recall.covisit_items"] > 100
    r = CliRunner().invoke(app, ["build", "-w", str(ws.root), "--engine", "spark",
                                 "--tables", str(tmp_path / "run")])
    assert r.exit_code == 2 and "give one" in r.output
