"""Lines split into named fields and checked as whole columns; failing lines become rejects
with row number, field and reason. Also the small column converters every reader uses."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.loaders._read import Lines
from funnel.data.loaders.base import REJECTED_SCHEMA
from funnel.data.schema import TIMESTAMP

INT_PATTERN = r"^-?[0-9]{1,18}$"  # what Arrow casts to int64 (it refuses a "+" sign)
MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z: beyond it, datetimes break
FLOAT_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


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
        table = pa.concat_tables(self._rejects) if self._rejects else REJECTED_SCHEMA.empty_table()
        return table.sort_by([("source_row", "ascending")])


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
