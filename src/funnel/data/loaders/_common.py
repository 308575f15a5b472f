"""Shared machinery of the format readers: lines, fields, rejects, content-hash ids, tables.

Every reader follows the same vectorized path (no per-line Python parsing): read the file once,
split it into lines, split each line into fields with ``pyarrow.compute``, check field counts and
number formats as whole columns, and send each failing line to ``rejected`` with its 1-based row
number and the first reason it failed. Content-hash event ids are built as columns too and
hashed by DuckDB's vectorized ``md5`` (see :func:`content_ids`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from funnel.data.loaders.base import REJECTED_SCHEMA, SOURCE_FILE, SOURCE_ROW, SourceTables
from funnel.data.schema import SCHEMAS, TIMESTAMP
from funnel.exceptions import DataFileError

INT_PATTERN = r"^-?[0-9]{1,18}$"  # what Arrow casts to int64 (it refuses a "+" sign)
MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z: beyond it, datetimes break
FLOAT_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


# ---------------------------------------------------------------------------------------------
# reading


def read_text(path: Path, *, encoding: str = "utf-8") -> str:
    """The decoded text of ``path`` (``.gz`` transparently); raise ``DataFileError`` if unreadable.

    ``encoding="utf-8"`` falls back to latin-1 for files that are not valid UTF-8 (old GroupLens
    files are latin-1), because latin-1 decodes any byte and the ids we need are ASCII anyway.
    """
    _check_file(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError) as err:
        raise DataFileError(str(path), f"cannot read: {err}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text


@dataclass(frozen=True)
class Lines:
    """The non-blank data lines of one file and their 1-based row numbers (header excluded)."""

    path: Path
    text: pa.Array  # string, one per line
    rows: pa.Array  # int64


def read_lines(
    path: Path, *, header: bool, encoding: str = "utf-8"
) -> tuple[str | None, Lines]:
    """Split ``path`` into (header line or None, data lines); blank lines are skipped.

    Lines come from Arrow's CSV reader set up as a one-column, no-quote reader (C++, no Python
    string per line). Files it cannot take that way (not UTF-8, or holding the ASCII record
    separator it uses as a delimiter) fall back to decoding in Python.
    """
    _check_file(path)
    try:
        column = _arrow_lines(path, encoding)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        raw = read_text(path, encoding=encoding).split("\n")
        if raw and raw[-1] == "":
            raw.pop()
        column = pa.array(raw, type=pa.string())
    except OSError as err:
        raise DataFileError(str(path), f"cannot read: {err}") from None
    head: str | None = None
    if header:
        if len(column) == 0:
            raise DataFileError(str(path), "is empty, expected a header line")
        head = column[0].as_py()
        column = column.slice(1)
    rows = pa.array(np.arange(1, len(column) + 1, dtype=np.int64))
    keep = pc.not_equal(column, "")
    return head, Lines(path, column.filter(keep), rows.filter(keep))


_RECORD_SEPARATOR = "\x1e"


def _arrow_lines(path: Path, encoding: str) -> pa.Array:
    table = pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(
            column_names=["line"],
            encoding="utf8" if encoding == "utf-8" else encoding,
            use_threads=False,
            block_size=1 << 24,
        ),
        parse_options=pa_csv.ParseOptions(
            delimiter=_RECORD_SEPARATOR,
            quote_char=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={"line": pa.string()},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    return table.column("line").combine_chunks()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataFileError(str(path), "no such file")
    if path.is_dir():
        raise DataFileError(str(path), "is a directory, expected a file")


def first_line(path: Path) -> str:
    """The first non-blank line of ``path`` (for format sniffing; reads only the start)."""
    _check_file(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            start = fh.read(1 << 16)
    except (OSError, EOFError) as err:
        raise DataFileError(str(path), f"cannot read: {err}") from None
    text = start.decode("utf-8", errors="replace").lstrip("\ufeff")
    for line in text.split("\n"):
        if line.strip():
            return line.rstrip("\r")
    raise DataFileError(str(path), "is empty")


# ---------------------------------------------------------------------------------------------
# splitting and checking


class Fields:
    """Lines split into named fields, narrowed by checks; failing lines collect as rejects.

    ``require(field, bad, reason)`` drops the rows where ``bad`` is true and records them with
    the reason; later checks see only the rows still good, so each line is rejected once, for
    the first problem found.
    """

    def __init__(
        self, lines: Lines, sep: str, names: Sequence[str], labels: Sequence[str] | None = None
    ) -> None:
        self.path = lines.path
        self._rejects: list[pa.Table] = []
        # how rejects name a field: the file's own header spelling when it differs from ours
        self._labels = dict(zip(names, labels, strict=True)) if labels else {}
        lists = pc.split_pattern(lines.text, sep)
        counts = pc.list_value_length(lists)
        ok = pc.equal(counts, len(names))
        if not pc.all(ok).as_py():
            bad = pc.invert(ok)
            got = counts.filter(bad).to_pylist()
            self._reject(
                lines.rows.filter(bad),
                lines.text.filter(bad),
                None,
                [f"expected {len(names)} fields separated by {sep!r}, got {n}" for n in got],
            )
            lists = lists.filter(ok)
            lines = Lines(lines.path, lines.text.filter(ok), lines.rows.filter(ok))
        self.rows: pa.Array = lines.rows
        self.raw: pa.Array = lines.text
        self.columns: dict[str, pa.Array] = {
            name: pc.list_element(lists, i) for i, name in enumerate(names)
        }

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> pa.Array:
        return self.columns[name]

    def __setitem__(self, name: str, values: pa.Array) -> None:
        if len(values) != len(self.rows):
            raise ValueError(f"column {name!r} has {len(values)} rows, expected {len(self.rows)}")
        self.columns[name] = values

    def _reject(
        self, rows: pa.Array, raw: pa.Array, field: str | None, reasons: Sequence[str]
    ) -> None:
        n = len(rows)
        self._rejects.append(
            pa.table(
                {
                    "source_file": pa.array([str(self.path)] * n, pa.string()),
                    "source_row": rows,
                    "field": pa.array([field] * n, pa.string()),
                    "reason": pa.array(list(reasons), pa.string()),
                    "raw": raw,
                },
                schema=REJECTED_SCHEMA,
            )
        )

    def require(self, field: str, bad: pa.Array, expected: str) -> None:
        """Reject rows where ``bad`` (null counts as bad), naming the value and ``expected``."""
        bad = pc.fill_null(bad, True)
        if not pc.any(bad).as_py():
            return
        values = self.columns[field].filter(bad).to_pylist() if field in self.columns else None
        n = pc.sum(bad).as_py()
        reasons = (
            [f"expected {expected}, got {v!r}" for v in values]
            if values is not None
            else [f"expected {expected}"] * n
        )
        label = self._labels.get(field, field)
        self._reject(self.rows.filter(bad), self.raw.filter(bad), label, reasons)
        keep = pc.invert(bad)
        self.rows = self.rows.filter(keep)
        self.raw = self.raw.filter(keep)
        self.columns = {k: v.filter(keep) for k, v in self.columns.items()}

    def require_int(self, field: str, *, allow_empty: bool = False) -> None:
        """Keep rows whose ``field`` is an integer (or empty, if allowed)."""
        values = self.columns[field]
        if _casts(empty_to_null(values) if allow_empty else values, pa.int64()):
            return  # the common case: one C++ cast proves every row, no regex needed
        ok = pc.match_substring_regex(values, INT_PATTERN)
        if allow_empty:
            ok = pc.or_(ok, pc.equal(values, ""))
        self.require(field, pc.invert(ok), "an integer" + (" or empty" if allow_empty else ""))

    def require_float(self, field: str, *, allow_empty: bool = False) -> None:
        """Keep rows whose ``field`` is a finite decimal number (or empty, if allowed)."""
        values = self.columns[field]
        if _casts(empty_to_null(values) if allow_empty else values, pa.float64(), finite=True):
            return
        ok = pc.match_substring_regex(values, FLOAT_PATTERN)
        if allow_empty:
            ok = pc.or_(ok, pc.equal(values, ""))
        self.require(field, pc.invert(ok), "a number" + (" or empty" if allow_empty else ""))

    def require_epoch_seconds(self, field: str, *, integer: bool = False) -> None:
        """Keep rows whose ``field`` is unix seconds within years 1..9999 (so ms fit int64)."""
        if integer:
            self.require_int(field)
        else:
            self.require_float(field)
        seconds = pc.cast(self.columns[field], pa.float64())
        out_of_range = pc.greater(pc.abs(seconds), MAX_EPOCH_SECONDS)
        self.require(field, out_of_range, f"unix seconds within +-{MAX_EPOCH_SECONDS:,}")

    def require_int_within(self, field: str, limit: int) -> None:
        """Keep rows whose ``field`` is an integer with absolute value at most ``limit``."""
        self.require_int(field)
        too_big = pc.greater(pc.abs(pc.cast(self.columns[field], pa.float64())), limit)
        self.require(field, too_big, f"an integer within +-{limit:,}")

    def require_nonempty(self, field: str) -> None:
        """Keep rows whose ``field`` is not empty (after trimming spaces)."""
        empty = pc.equal(pc.utf8_trim_whitespace(self.columns[field]), "")
        self.require(field, empty, "a non-empty value")

    def require_in(self, field: str, allowed: Iterable[str]) -> None:
        """Keep rows whose ``field`` is one of ``allowed``."""
        allowed = list(allowed)
        bad = pc.invert(pc.is_in(self.columns[field], value_set=pa.array(allowed, pa.string())))
        self.require(field, bad, "one of " + ", ".join(allowed))

    def rejected(self) -> pa.Table:
        """The rejected lines, in file order."""
        return concat(self._rejects, REJECTED_SCHEMA).sort_by([("source_row", "ascending")])


def _casts(values: pa.Array, type_: pa.DataType, *, finite: bool = False) -> bool:
    """True when every non-null value casts to ``type_`` (and is finite, if asked)."""
    try:
        out = pc.cast(values, type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    # nulls stand for allowed empties; pc.all skips them (and is null when all are null)
    return not finite or pc.all(pc.is_finite(out)).as_py() is not False


# ---------------------------------------------------------------------------------------------
# value conversion


def as_int(values: pa.Array) -> pa.Array:
    """Integer strings (already checked) -> int64; empty strings -> null."""
    return pc.cast(empty_to_null(values), pa.int64())


def as_float(values: pa.Array, type_: pa.DataType | None = None) -> pa.Array:
    """Number strings (already checked) -> float64 (or ``type_``); empty strings -> null."""
    return pc.cast(empty_to_null(values), type_ or pa.float64())


def empty_to_null(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def seconds_to_ms(values: pa.Array) -> pa.Array:
    """Epoch-second strings (integer or decimal, already checked) -> int64 epoch milliseconds."""
    seconds = pc.cast(values, pa.float64())
    return pc.cast(pc.round(pc.multiply(seconds, 1000.0)), pa.int64())


def ms_to_ts(ms: pa.Array) -> pa.Array:
    return pc.cast(ms, pa.int64()).cast(TIMESTAMP)


def prefixed(prefix: str, values: pa.Array) -> pa.Array:
    """``prefix + value`` for each value."""
    return pc.binary_join_element_wise(pa.scalar(prefix), values, "")


def json_objects(records: Iterable[Mapping[str, Any]]) -> pa.Array:
    """One compact JSON object per record (the contract's ``attributes`` text)."""
    return pa.array(
        [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records], pa.string()
    )


# ---------------------------------------------------------------------------------------------
# ids and tables


def content_ids(
    family: str,
    users: pa.Array,
    items: pa.Array | None,
    ts_ms: pa.Array,
    event_type: str | pa.Array,
    *,
    salt: pa.Array | None = None,
) -> pa.Array:
    """Idempotent event ids for sources that have none.

    ``md5("family|user|item|ts|type[|salt]|k")`` as 32 hex digits, where ``k`` counts earlier
    events with the same key in the same call, so true repeats in a file stay distinct while a
    re-read of the same file gives the same ids. ``family`` names the dataset, not the file
    layout, so the same rating read from RecBole atomic files or from the original ``u.data``
    gets the same id. ``salt`` adds per-event content when the other fields are not distinctive
    (Criteo). Pass all events of a type from one file in ONE call (``event_type`` may be a
    column): the occurrence count only sees the keys of its call. MD5 is a content fingerprint
    here, not a security measure; DuckDB computes it vectorized (4x faster than a Python loop
    over hashlib), and ``hashlib.md5`` of the same string gives the same id.
    """
    n = len(users)
    parts = [
        pa.repeat(pa.scalar(family, pa.string()), n),
        pc.cast(users, pa.string()),
        pc.fill_null(pc.cast(items, pa.string()), "")
        if items is not None
        else pa.repeat(pa.scalar("", pa.string()), n),
        pc.cast(ts_ms, pa.string()),
        pa.repeat(pa.scalar(event_type, pa.string()), n)
        if isinstance(event_type, str)
        else event_type,
    ]
    if salt is not None:
        parts.append(pc.cast(salt, pa.string()))
    keys = pc.binary_join_element_wise(*parts, "|")
    occurrence = pc.cast(pa.array(occurrence_index(keys)), pa.string())
    return md5_hex(pc.binary_join_element_wise(keys, occurrence, "|"))


SMALL_HASH_BATCH = 4096
"""Below this many keys, hashlib in Python beats the round trip through DuckDB."""

_duck: tuple[int, duckdb.DuckDBPyConnection] | None = None  # (owner pid, connection)
_duck_lock = threading.Lock()


def md5_hex(keys: pa.Array) -> pa.Array:
    """``md5(key)`` as 32 lowercase hex digits per string (identical to ``hashlib.md5``)."""
    if len(keys) < SMALL_HASH_BATCH:
        md5 = hashlib.md5
        return pa.array([md5(k.encode()).hexdigest() for k in keys.to_pylist()], pa.string())
    return _duck_query("SELECT md5(k) AS id FROM event_keys", keys, "id").cast(pa.string())


def _duck_query(sql: str, keys: pa.Array, column: str) -> pa.Array:
    """Run ``sql`` over ``keys`` registered as ``event_keys(k)``; one column, in row order."""
    global _duck
    with _duck_lock:  # one in-memory connection per process; connecting costs ~0.1 s
        if _duck is None or _duck[0] != os.getpid():  # never reuse one across a fork
            _duck = (os.getpid(), duckdb.connect())
        con = _duck[1]
        con.register("event_keys", pa.table({"k": keys}))
        try:
            # preserve_insertion_order is on by default: results come back in row order
            out = con.sql(sql).to_arrow_table().column(column)
        finally:
            con.unregister("event_keys")
    return out.combine_chunks()


def occurrence_index(values: pa.Array) -> np.ndarray:
    """For each position, how many earlier positions hold the same value (0 for the first).

    Large inputs group by DuckDB's 64-bit ``hash`` (sorting integers beats dictionary-encoding
    long strings by ~2x); equal values always share a group, so repeats get distinct counts.
    A hash collision between two different values (odds ~n^2 / 2^65) would only shift their
    counts, which stays deterministic for the same input, so ids stay idempotent.
    """
    n = len(values)
    if n < SMALL_HASH_BATCH:
        codes = pc.dictionary_encode(values).indices.to_numpy(zero_copy_only=False)
    else:
        codes = _duck_query("SELECT hash(k) AS h FROM event_keys", values, "h").to_numpy()
    order = np.argsort(codes, kind="stable")  # equal codes stay in file order
    ranked = codes[order]
    starts_here = np.ones(n, dtype=bool)
    starts_here[1:] = ranked[1:] != ranked[:-1]
    group_start = np.maximum.accumulate(np.where(starts_here, np.arange(n), 0))
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) - group_start
    return out


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
