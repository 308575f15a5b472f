"""What every loader returns: contract-named tables plus the rows it could not even parse.

A loader maps one source format onto the data contract (``funnel.data.schema``). Its tables use
the contract's column names; values may still be loosely typed (strings, epoch integers), because
``funnel.data.validate`` coerces and checks every row and quarantines the failures. Two extra
columns travel with each table so a quarantined row can be traced to its origin:

- ``_source_file`` (string): the path the row came from;
- ``_source_row`` (int64): 1-based row (line) number in that file, header excluded.

``rejected`` holds rows the loader could not map at all (wrong field count, unparseable line),
in the quarantine layout: source_file, source_row, field, reason, raw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string()),
        pa.field("source_row", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
    ]
)


@dataclass
class SourceTables:
    """Tables read from one source file (any of them may be absent)."""

    items: pa.Table | None = None
    users: pa.Table | None = None
    events: pa.Table | None = None
    truth: pa.Table | None = None
    rejected: pa.Table = field(default_factory=REJECTED_SCHEMA.empty_table)

    def kinds(self) -> dict[str, pa.Table]:
        out = {
            "items": self.items,
            "users": self.users,
            "events": self.events,
            "truth": self.truth,
        }
        return {k: v for k, v in out.items() if v is not None}


Loader = Callable[[Path], SourceTables]
"""A loader reads one path (file, or directory for multi-file formats) into ``SourceTables``."""
