"""Contract-shaped tables: exact contract columns plus source columns, events with ids,
and the concat / order / dedupe / merge helpers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.loaders._fields import ms_to_ts
from funnel.data.loaders._ids import content_ids
from funnel.data.loaders.base import REJECTED_SCHEMA, SOURCE_FILE, SOURCE_ROW, SourceTables
from funnel.data.schema import SCHEMAS


def contract_table(
    kind: str, columns: Mapping[str, Any], *, path: Path, rows: pa.Array
) -> pa.Table:
    """Exactly the contract columns of ``kind`` (missing ones null), then the source columns."""
    schema = SCHEMAS[kind]
    n = len(rows)
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise ValueError(f"columns {sorted(unknown)} are not in the {kind} contract")
    arrays = []
    for fld in schema:
        value = columns.get(fld.name)
        if value is None:
            arrays.append(pa.nulls(n, fld.type))
        elif isinstance(value, str | int | float):
            arrays.append(pa.repeat(pa.scalar(value, fld.type), n))
        else:
            arr = value if isinstance(value, pa.Array | pa.ChunkedArray) else pa.array(value)
            arrays.append(pc.cast(arr, fld.type))
    arrays.append(pa.repeat(pa.scalar(str(path), pa.string()), n))
    arrays.append(pc.cast(rows, pa.int64()))
    fields = [pa.field(f.name, f.type) for f in schema]
    fields += [pa.field(SOURCE_FILE, pa.string()), pa.field(SOURCE_ROW, pa.int64())]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def event_table(
    *,
    family: str,
    path: Path,
    rows: pa.Array,
    ts_ms: pa.Array,
    user_id: pa.Array,
    event_type: str | pa.Array,
    item_id: pa.Array | None = None,
    **extra: Any,
) -> pa.Table:
    """Contract events (one type, or a type per row), with content-hash ids (see
    :func:`content_ids`)."""
    columns: dict[str, Any] = {
        "event_id": content_ids(family, user_id, item_id, ts_ms, event_type),
        "ts": ms_to_ts(ts_ms),
        "user_id": user_id,
        "event_type": event_type,
        "item_id": item_id,
        **extra,
    }
    return contract_table("events", columns, path=path, rows=rows)


def concat(tables: Sequence[pa.Table], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate same-schema tables (an empty table of ``schema`` when there are none)."""
    tables = [t for t in tables if t is not None]
    if not tables:
        if schema is None:
            raise ValueError("concat of no tables needs a schema")
        return schema.empty_table()
    return pa.concat_tables(tables).combine_chunks()


def sort_events(events: pa.Table) -> pa.Table:
    """Events in file order; for one line, in the order the loader emitted them (stable)."""
    return events.sort_by([(SOURCE_ROW, "ascending")])


def first_rows(table: pa.Table, key: str) -> pa.Table:
    """The first row of ``table`` for each distinct ``key`` value, in first-seen order."""
    idx = pa.array(np.arange(len(table), dtype=np.int64))
    firsts = (
        table.select([key])
        .append_column("_i", idx)
        .group_by(key, use_threads=False)
        .aggregate([("_i", "min")])
        .column("_i_min")
    )
    return table.take(pc.take(firsts, pc.sort_indices(firsts)))


def merge(parts: Sequence[SourceTables]) -> SourceTables:
    """One ``SourceTables`` from several files' tables (kind by kind)."""
    out = SourceTables()
    for kind in ("items", "users", "events"):
        tables = [getattr(p, kind) for p in parts if getattr(p, kind) is not None]
        if tables:
            setattr(out, kind, concat(tables))
    out.rejected = concat([p.rejected for p in parts], REJECTED_SCHEMA)
    return out
