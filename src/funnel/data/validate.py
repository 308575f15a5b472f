"""Row validation with quarantine, as one vectorized DuckDB query per table.

Every incoming row is coerced to the contract type of each field (safe coercion only: numbers
from numeric text, timestamps from ISO-8601 text or epoch seconds/milliseconds) and checked for
required fields, known event types, id sanity and value ranges. A row that fails any check is
not stored: it goes to quarantine with its source file, source row, the first failing field,
the reason, and the raw row as JSON. ``read == valid + quarantined`` always holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from funnel.data.loaders.base import REJECTED_SCHEMA, SOURCE_FILE, SOURCE_ROW
from funnel.data.schema import EVENT_TYPES, LIMITS, SCHEMAS

QUARANTINE_SCHEMA = pa.schema([*REJECTED_SCHEMA, pa.field("kind", pa.string())])

MIN_TS = "1990-01-01"
MAX_TS = "2100-01-01"
EPOCH_SECONDS_BELOW = 1e11
"""Epoch values under this are seconds (year 5138), above it milliseconds."""


@dataclass(frozen=True)
class ValidationResult:
    valid: pa.Table  # contract schema, no helper columns
    quarantine: pa.Table  # QUARANTINE_SCHEMA

    @property
    def n_read(self) -> int:
        return self.valid.num_rows + self.quarantine.num_rows


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def _raw_text(col: str, present: bool) -> str:
    return f"TRY_CAST({_q(col)} AS VARCHAR)" if present else "CAST(NULL AS VARCHAR)"


def _coerce(field: pa.Field, source_type: pa.DataType | None) -> str:
    """SQL expression for the field coerced to its contract type (NULL when impossible)."""
    col = _q(field.name)
    if source_type is None:
        return "NULL"
    target = field.type
    if pa.types.is_timestamp(target):
        if pa.types.is_timestamp(source_type) or pa.types.is_date(source_type):
            return f"CAST({col} AS TIMESTAMPTZ)"
        if pa.types.is_integer(source_type) or pa.types.is_floating(source_type):
            num = f"CAST({col} AS DOUBLE)"
        else:
            num = f"TRY_CAST(trim(CAST({col} AS VARCHAR)) AS DOUBLE)"
        epoch = (
            f"CASE WHEN isfinite({num}) AND abs({num}) < {EPOCH_SECONDS_BELOW} "
            f"THEN to_timestamp({num}) WHEN isfinite({num}) AND abs({num}) < 1e14 "
            f"THEN to_timestamp({num} / 1000.0) END"
        )
        if pa.types.is_integer(source_type) or pa.types.is_floating(source_type):
            return epoch
        text = f"TRY_CAST(trim(CAST({col} AS VARCHAR)) AS TIMESTAMPTZ)"
        return f"CASE WHEN {num} IS NOT NULL THEN {epoch} ELSE {text} END"
    if pa.types.is_string(target):
        if pa.types.is_string(source_type) or pa.types.is_large_string(source_type):
            return f"NULLIF(trim({col}), '')"
        if pa.types.is_floating(source_type):
            # 12.0 -> '12' so numeric ids read from CSV/JSON keep their natural form
            return (
                f"CASE WHEN {col} = floor({col}) AND abs({col}) < 1e15 "
                f"THEN CAST(CAST({col} AS BIGINT) AS VARCHAR) ELSE CAST({col} AS VARCHAR) END"
            )
        if (
            pa.types.is_struct(source_type)
            or pa.types.is_list(source_type)
            or pa.types.is_map(source_type)
        ):
            return f"CAST(to_json({col}) AS VARCHAR)"
        return f"CAST({col} AS VARCHAR)"
    if pa.types.is_integer(target):
        if pa.types.is_integer(source_type):
            return f"TRY_CAST({col} AS BIGINT)"
        dbl = f"TRY_CAST(trim(CAST({col} AS VARCHAR)) AS DOUBLE)"
        return f"CASE WHEN {dbl} = floor({dbl}) THEN TRY_CAST({dbl} AS BIGINT) END"
    if pa.types.is_floating(target):
        return f"TRY_CAST(trim(CAST({col} AS VARCHAR)) AS DOUBLE)"
    raise TypeError(f"no coercion for {field}")


def _checks(kind: str, field: pa.Field, value: str, raw_present: str) -> list[tuple[str, str]]:
    """(condition that FAILS the row, reason) pairs for one field, in order."""
    name = field.name
    out: list[tuple[str, str]] = []
    required = not field.nullable
    type_name = str(field.type).split("[")[0]
    if required:
        out.append((f"NOT ({raw_present})", "required field is missing"))
    out.append((f"({raw_present}) AND {value} IS NULL", f"cannot be read as {type_name}"))
    if pa.types.is_string(field.type) and (name.endswith("_id") or name == "event_type"):
        out.append(
            (
                f"length({value}) > {int(LIMITS['max_id_len'])}",
                f"longer than {int(LIMITS['max_id_len'])} characters",
            ),
        )
    elif pa.types.is_string(field.type):
        out.append(
            (
                f"length({value}) > {int(LIMITS['max_text_len'])}",
                f"longer than {int(LIMITS['max_text_len'])} characters",
            ),
        )
    if pa.types.is_timestamp(field.type):
        out.append(
            (
                f"({value} < TIMESTAMPTZ '{MIN_TS}' OR {value} >= TIMESTAMPTZ '{MAX_TS}')",
                f"timestamp outside {MIN_TS}..{MAX_TS}",
            ),
        )
    if name == "price" or name == "bid":
        out.append(
            (
                f"(NOT isfinite({value}) OR {value} < 0 OR {value} > {LIMITS['max_price']})",
                f"must be a finite number in 0..{LIMITS['max_price']:.0e}",
            ),
        )
    if name == "position":
        out.append(
            (
                f"({value} < 0 OR {value} > {int(LIMITS['max_position'])})",
                f"must be in 0..{int(LIMITS['max_position'])}",
            ),
        )
    if name == "dwell_ms":
        out.append(
            (
                f"({value} < 0 OR {value} > {int(LIMITS['max_dwell_ms'])})",
                f"must be in 0..{int(LIMITS['max_dwell_ms'])} ms",
            ),
        )
    if name == "attributes":
        out.append(
            (
                f"{value} IS NOT NULL AND "
                f"json_type(TRY_CAST({value} AS JSON)) IS DISTINCT FROM 'OBJECT'",
                "must be a JSON object",
            ),
        )
    if kind == "events" and name == "event_type":
        known = ", ".join(f"'{t}'" for t in EVENT_TYPES)
        out.append((f"{value} NOT IN ({known})", f"unknown event type (expected one of {known})"))
    if kind == "events" and name == "item_id":
        out.append(
            (
                f"c_event_type IN ('impression','click','add_to_cart','booking') "
                f"AND {value} IS NULL",
                "required for impression/click/add_to_cart/booking events",
            ),
        )
    if kind == "events" and name == "query":
        out.append((f"c_event_type = 'search' AND {value} IS NULL", "required for search events"))
    return out


def validate_table(
    con: duckdb.DuckDBPyConnection, kind: str, table: pa.Table, *, source_file: str
) -> ValidationResult:
    """Coerce and check ``table`` against the contract ``kind``; split valid and quarantined rows.

    ``table`` may carry ``_source_file``/``_source_row``; when it has no ``event_id`` (events)
    a content hash is used, so re-ingesting the same rows is idempotent.
    """
    schema = SCHEMAS[kind]
    present = {name: table.schema.field(name).type for name in table.column_names}
    if SOURCE_ROW not in present:
        table = table.append_column(SOURCE_ROW, pa.array(range(1, table.num_rows + 1), pa.int64()))
    if SOURCE_FILE not in present:
        table = table.append_column(
            SOURCE_FILE, pa.array([source_file] * table.num_rows, pa.string())
        )
    con.execute("SET TimeZone='UTC'")
    con.register("_incoming", table)
    try:
        coerced = []
        checks: list[tuple[str, str, str]] = []
        for field in schema:
            src_type = present.get(field.name)
            raw = _raw_text(field.name, src_type is not None)
            raw_present = f"NULLIF(trim({raw}), '') IS NOT NULL"
            if field.name == "event_id" and kind in ("events",) and src_type is None:
                continue  # filled from a content hash below
            expr = _coerce(field, src_type)
            if field.name == "event_type":
                expr = f"lower({expr})"
            coerced.append(f"{expr} AS c_{field.name}")
            coerced.append(f"{raw_present} AS p_{field.name}")
            for cond, reason in _checks(kind, field, f"c_{field.name}", f"p_{field.name}"):
                checks.append((field.name, cond, reason))
        case = " ".join(
            f"WHEN {cond} THEN {{'field': '{name}', 'reason': '{_sql_str(reason)}'}}"
            for name, cond, reason in checks
        )
        raw_json = "to_json(_incoming)"
        hashed = ""
        if kind == "events" and "event_id" not in present:
            content = ", ".join(
                f"coalesce(CAST(c_{f.name} AS VARCHAR), '')" for f in schema if f.name != "event_id"
            )
            hashed = (
                f", 'h' || substr(md5(concat_ws('|', {content}, CAST(row_number() OVER "
                f"(PARTITION BY {content} ORDER BY sr) AS VARCHAR))), 1, 24) "
                "AS c_event_id"
            )
        sql = f"""
            WITH c AS (
                SELECT {", ".join(coerced)}, {_q(SOURCE_FILE)} AS sf, {_q(SOURCE_ROW)} AS sr,
                       CAST({raw_json} AS VARCHAR) AS raw
                FROM _incoming
            ), h AS (SELECT *{hashed} FROM c),
            judged AS (SELECT *, CASE {case} END AS verdict FROM h)
        """
        cols = ", ".join(f"c_{f.name} AS {_q(f.name)}" for f in schema)
        valid = con.sql(
            f"{sql} SELECT {cols} FROM judged WHERE verdict IS NULL ORDER BY sr"
        ).to_arrow_table()
        bad = con.sql(
            f"""{sql} SELECT sf AS source_file, sr AS source_row, verdict.field AS field,
                   verdict.reason AS reason, raw, '{kind}' AS kind
                FROM judged WHERE verdict IS NOT NULL ORDER BY sr"""
        ).to_arrow_table()
    finally:
        con.unregister("_incoming")
    return ValidationResult(
        valid=valid.cast(schema, safe=False),
        quarantine=bad.cast(QUARANTINE_SCHEMA),
    )
