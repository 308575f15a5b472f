"""Run one DuckDB query over in-memory Arrow tables (the behaviour sources fit this way)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa


def run(
    sql: str, tables: Mapping[str, pa.Table], params: Mapping[str, Any] | None = None
) -> pa.Table:
    """``sql`` over ``tables`` registered by name, on a private single-thread connection."""
    con = duckdb.connect()
    try:
        con.execute("SET threads TO 1")
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql, params=dict(params or {})).to_arrow_table()
    finally:
        con.close()


def require_columns(table: Any, name: str, columns: Sequence[str]) -> None:
    """ValueError naming the missing columns of input ``name``."""
    if not isinstance(table, pa.Table):
        raise TypeError(f"{name} must be a pyarrow.Table; got {type(table).__name__}")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {missing}; got {table.column_names}, "
            f"expected at least {list(columns)}"
        )
