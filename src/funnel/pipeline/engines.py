"""Two engines that run the same stage SQL: DuckDB (one process) and Spark (a cluster).

An engine knows how to load input tables (Arrow, or Parquet directories partitioned by
``dt=YYYY-MM-DD/``), materialize a ``SELECT`` under a table name, hand a table back as Arrow and
write one as partitioned Parquet. It holds no stage logic (that lives in ``stages``).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from funnel.exceptions import DataFileError
from funnel.pipeline.dialect import DUCKDB, SPARK, Dialect
from funnel.pipeline.location import Location, filesystem, is_url


class Engine(Protocol):
    dialect: Dialect

    def register_arrow(self, name: str, table: pa.Table) -> None: ...
    def read_parquet(self, name: str, path: Location) -> None: ...
    def materialize(self, name: str, sql: str) -> int: ...
    def to_arrow(self, name: str) -> pa.Table: ...
    def write_parquet(self, name: str, out: Location, partition_by: str | None) -> None: ...
    def close(self) -> None: ...


def _parquet_glob(path: Path) -> str:
    """All Parquet files under ``path`` (a file, or a directory possibly partitioned)."""
    path = Path(path)
    if path.is_file():
        return str(path)
    if not path.is_dir():
        raise DataFileError(str(path), "parquet input does not exist")
    if not any(path.rglob("*.parquet")):
        raise DataFileError(str(path), "parquet input holds no *.parquet files")
    return str(path / "**" / "*.parquet")


class DuckDBEngine:
    """Stages on DuckDB; ``con`` defaults to an in-memory database.

    Stage outputs are sets of rows (readers sort them), so the engine's own connection runs
    with ``preserve_insertion_order=false``: DuckDB may then build tables and write Parquet
    from all threads without re-establishing the input order (less memory, more parallelism).
    A connection passed in keeps its own setting.
    """

    dialect = DUCKDB

    def __init__(self, con: duckdb.DuckDBPyConnection | None = None,
                 *, memory_limit: str | None = None, threads: int | None = None) -> None:
        if con is None:
            con = duckdb.connect()
            con.execute("SET preserve_insertion_order=false")
        self.con = con
        self.con.execute("SET TimeZone='UTC'")
        if memory_limit:
            self.con.execute(f"SET memory_limit='{memory_limit}'")
        if threads:
            self.con.execute(f"SET threads={int(threads)}")

    def register_arrow(self, name: str, table: pa.Table) -> None:
        self.con.register(f"__{name}_arrow", table)
        self.con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __{name}_arrow")
        self.con.unregister(f"__{name}_arrow")

    def read_parquet(self, name: str, path: Location) -> None:
        """A view over the files, so DuckDB streams them instead of copying them in."""
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS {parquet_select(self.con, path)}")

    def materialize(self, name: str, sql: str) -> int:
        self.con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}")
        return int(self.con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])

    def to_arrow(self, name: str) -> pa.Table:
        return self.con.sql(f"SELECT * FROM {name}").to_arrow_table()

    def write_parquet(self, name: str, out: Location, partition_by: str | None) -> None:
        if is_url(out):
            raise DataFileError(str(out), "the duckdb engine writes local directories; write "
                                "to a URL with --engine spark")
        out = Path(out)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if partition_by is None:
            out.mkdir(parents=True)
            self.con.execute(f"COPY {name} TO '{out / 'part-0.parquet'}' (FORMAT PARQUET)")
            return
        dt = self.dialect.date_str(partition_by)
        self.con.execute(
            f"COPY (SELECT *, {dt} AS dt FROM {name}) TO '{out}' "
            f"(FORMAT PARQUET, PARTITION_BY (dt))"
        )

    def close(self) -> None:
        self.con.close()


def parquet_select(con: duckdb.DuckDBPyConnection, path: Location) -> str:
    """DuckDB ``SELECT`` of every row of a Parquet file or directory (``dt=`` partitions read
    and their column dropped: it is derived from a timestamp the rows keep). A URL is read
    through a pyarrow dataset registered on ``con`` (valid on that connection only)."""
    if is_url(path):
        fs, where = filesystem(path)
        if fs.get_file_info(where).type == pafs.FileType.NotFound:
            raise DataFileError(str(path), "parquet input does not exist")
        data = ds.dataset(where, filesystem=fs, format="parquet", partitioning="hive")
        name = f"__parquet_{abs(hash(str(path)))}"
        con.register(name, data)
        cols = "* EXCLUDE (dt)" if "dt" in data.schema.names else "*"
        return f"SELECT {cols} FROM {name}"
    local = Path(path)
    glob = _parquet_glob(local)
    cols = "* EXCLUDE (dt)" if _has_dt(local) else "*"
    return (f"SELECT {cols} FROM read_parquet('{glob}', "
            f"hive_partitioning = {str(_has_dt(local)).lower()}, union_by_name = true)")


def _has_dt(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and any(p.name.startswith("dt=") for p in path.iterdir())


def spark_session(master: str = "local[2]", *, shuffle_partitions: int = 4,
                  driver_memory: str = "2g", app_name: str = "funnel-pipeline") -> Any:
    """A SparkSession configured for the pipeline: UTC, no UI, Arrow transfer, few partitions."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("the spark engine needs pyspark: pip install 'funnel[spark]'") from err
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.ansi.enabled", "false")
        .getOrCreate()
    )


class SparkEngine:
    """Stages on Spark SQL; tables are cached temp views of the given session."""

    dialect = SPARK

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self._cached: list[Any] = []

    def register_arrow(self, name: str, table: pa.Table) -> None:
        with warnings.catch_warnings():
            # PySpark 4.0 warns that it predates pandas 3; the Arrow path does not use pandas
            warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas",
                                    FutureWarning)
            self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def read_parquet(self, name: str, path: Location) -> None:
        if not is_url(path):
            _parquet_glob(Path(path))  # existence checks with the same messages as DuckDB
        df = self.spark.read.option("mergeSchema", "true").parquet(str(path))
        if "dt" in df.columns:
            df = df.drop("dt")
        df.createOrReplaceTempView(name)

    def materialize(self, name: str, sql: str) -> int:
        df = self.spark.sql(sql).cache()
        self._cached.append(df)
        df.createOrReplaceTempView(name)
        return int(df.count())

    def to_arrow(self, name: str) -> pa.Table:
        return self.spark.table(name).toArrow()

    def write_parquet(self, name: str, out: Location, partition_by: str | None) -> None:
        from pyspark.sql import functions as F  # noqa: N812 - the PySpark convention

        df = self.spark.table(name)
        writer = (
            df.withColumn("dt", F.date_format(partition_by, "yyyy-MM-dd")).write.partitionBy("dt")
            if partition_by is not None else df.write
        )
        writer.mode("overwrite").parquet(str(out))

    def close(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._cached.clear()
