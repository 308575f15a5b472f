"""Turn engine outputs into sorted, plain-Python rows so two engines compare exactly."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pyarrow as pa


def _plain(v: Any, float_digits: int) -> Any:
    if isinstance(v, dt.datetime):
        return int(round(v.timestamp() * 1000))  # UTC ms
    if isinstance(v, float):
        return v if math.isnan(v) else round(v, float_digits)
    if isinstance(v, list):
        return tuple(_plain(x, float_digits) for x in v)
    return v


def rows(table: pa.Table, key: tuple[str, ...], float_digits: int = 9) -> list[tuple]:
    """Rows as tuples in column-name order, sorted by ``key`` (floats rounded: sums in
    another order differ in the last bits)."""
    cols = sorted(table.column_names)
    data = table.select(cols).to_pylist()
    out = [tuple(_plain(r[c], float_digits) for c in cols) for r in data]
    idx = [cols.index(k) for k in key]
    return sorted(out, key=lambda r: tuple(r[i] for i in idx))
