"""The embedded event store: contract tables in one DuckDB file.

Inserts are idempotent: events and truth rows are keyed by ``event_id`` and never stored twice;
items and users are keyed by id and the newest version of a row wins. The caller owns the
transaction, so one source file is stored entirely or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from funnel.data.schema import PRIMARY_KEYS, SCHEMAS

INGEST_LOG_DDL = """
CREATE TABLE IF NOT EXISTS ingest_log (
    path VARCHAR, sha256 VARCHAR, format VARCHAR, read BIGINT, stored BIGINT,
    quarantined BIGINT, duplicates BIGINT, quarantine_file VARCHAR,
    ingested_at TIMESTAMPTZ DEFAULT current_timestamp
)
"""


def memory_store(tables: Mapping[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding each Arrow table under its name (e.g. the synthetic
    generator's ``items``/``events``/``truth``): the store the stage functions read, without a
    workspace on disk. The caller closes it."""
    con = duckdb.connect()
    for name, table in tables.items():
        con.register("_memory_store_src", table)
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _memory_store_src')
        con.unregister("_memory_store_src")
    return con


@dataclass(frozen=True)
class InsertCounts:
    stored: int
    duplicates: int


class EventStore:
    """Typed access to the contract tables of one DuckDB database."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    @classmethod
    @contextmanager
    def open(cls, path: Path | str, read_only: bool = False) -> Iterator[EventStore]:
        con = duckdb.connect(str(path), read_only=read_only)
        try:
            con.execute("SET TimeZone='UTC'")
            yield cls(con)
        finally:
            con.close()

    def ensure_tables(self) -> None:
        """Create the contract tables; a store made before a column joined the contract gets
        it added (NULL in the old rows), so a newer file still ingests into it."""
        for kind, schema in SCHEMAS.items():
            self.con.register("_empty", schema.empty_table())
            self.con.execute(f"CREATE TABLE IF NOT EXISTS {kind} AS SELECT * FROM _empty")
            have = {r[0] for r in self.con.execute(f"DESCRIBE {kind}").fetchall()}
            for name, sql_type, *_ in self.con.execute("DESCRIBE _empty").fetchall():
                if name not in have:
                    self.con.execute(f'ALTER TABLE {kind} ADD COLUMN "{name}" {sql_type}')
            self.con.unregister("_empty")
        self.con.execute(INGEST_LOG_DDL)

    def insert(self, kind: str, rows: pa.Table) -> InsertCounts:
        """Store validated contract rows of ``kind``; returns how many were new vs already there."""
        key = PRIMARY_KEYS[kind]
        if rows.num_rows == 0:
            return InsertCounts(0, 0)
        rows = rows.append_column("_ord", pa.array(range(rows.num_rows), pa.int64()))
        self.con.register("_new", rows)
        try:
            cols = ", ".join(f'"{f.name}"' for f in SCHEMAS[kind])
            # first occurrence of each key within the incoming rows
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE _dedup AS SELECT {cols} FROM _new "
                f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY _ord) = 1"
            )
            n_unique = self._scalar("SELECT count(*) FROM _dedup")
            if kind in ("events", "truth"):
                self.con.execute(
                    f"CREATE OR REPLACE TEMP TABLE _fresh AS SELECT d.* FROM _dedup d "
                    f"ANTI JOIN {kind} e ON d.{key} = e.{key}"
                )
                stored = self._scalar("SELECT count(*) FROM _fresh")
                self.con.execute(f"INSERT INTO {kind} BY NAME SELECT * FROM _fresh")
                self.con.execute("DROP TABLE IF EXISTS _fresh")
            else:
                identical = self._scalar(
                    f"SELECT count(*) FROM (SELECT * FROM _dedup INTERSECT SELECT * FROM {kind})"
                )
                self.con.execute(f"DELETE FROM {kind} WHERE {key} IN (SELECT {key} FROM _dedup)")
                self.con.execute(f"INSERT INTO {kind} BY NAME SELECT * FROM _dedup")
                stored = n_unique - identical
            return InsertCounts(stored=stored, duplicates=rows.num_rows - stored)
        finally:
            self.con.execute("DROP TABLE IF EXISTS _dedup")
            self.con.unregister("_new")

    def _scalar(self, sql: str) -> int:
        rows = self.con.execute(sql).fetchall()
        row = rows[0] if rows else None
        return int(row[0]) if row and row[0] is not None else 0

    def count(self, kind: str) -> int:
        return self._scalar(f"SELECT count(*) FROM {kind}")

    def has_table(self, name: str) -> bool:
        rows = self.con.execute(  # views count: a store may view Parquet
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchall()
        return bool(rows[0][0])

    def table(self, kind: str) -> pa.Table:
        return self.con.sql(f"SELECT * FROM {kind}").to_arrow_table()
