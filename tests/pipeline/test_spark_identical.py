"""Spark local[2] and DuckDB run the same stage SQL on the same data: identical rows.

One JVM for the session; every stage runs once per engine (module fixture), then each output
table is compared exactly after sorting (timestamps as UTC ms, floats to 9 decimals).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from funnel.pipeline.engines import DuckDBEngine, SparkEngine
from funnel.pipeline.run import load_inputs, run_pipeline
from funnel.pipeline.stages import plan

from ._compare import rows

pytestmark = [pytest.mark.slow, pytest.mark.spark]

ALL = ["sessions", "corpora", "covisit", "query_stats", "searches", "training_set"]
OUTPUTS = [s.output for s in plan(ALL)]


@pytest.fixture(scope="module")
def engines(spark, market, tmp_path_factory):
    """Both engines read the same dt-partitioned Parquet and run every stage; Spark writes."""
    spark.conf.set("spark.sql.codegen.wholeStage", "false")  # compile time dominates tiny data
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    src = tmp_path_factory.mktemp("in")
    writer = DuckDBEngine()
    writer.register_arrow("events", market["events"])
    writer.write_parquet("events", src / "events", "ts")
    writer.register_arrow("items", market["items"])
    writer.write_parquet("items", src / "items", None)
    duck, sp = DuckDBEngine(), SparkEngine(spark)
    load_inputs(duck, src)
    load_inputs(sp, src)
    out = tmp_path_factory.mktemp("spark_out")
    run_pipeline(duck, ALL)
    run_pipeline(sp, ALL, out=out)
    yield duck, sp, out
    sp.close()


@pytest.mark.parametrize("output", OUTPUTS)
def test_spark_rows_equal_duckdb_rows(engines, output):
    duck, sp, _ = engines
    key = next(s.sort_key for s in plan(ALL) if s.output == output)
    a, b = duck.to_arrow(output), sp.to_arrow(output)
    assert a.num_rows == b.num_rows > 0
    assert rows(a, key) == rows(b, key)


def test_spark_partitioned_output_reads_back_in_duckdb(engines):
    duck, _, out = engines
    days = sorted(p.name for p in (Path(out) / "training_rows").iterdir() if p.is_dir())
    assert len(days) > 1 and all(d.startswith("dt=") for d in days)
    back = duckdb.sql(
        f"SELECT * EXCLUDE (dt) FROM read_parquet('{out}/training_rows/**/*.parquet', "
        "hive_partitioning = true)"
    ).to_arrow_table()
    assert rows(back, ("event_id",)) == rows(duck.to_arrow("training_rows"), ("event_id",))
