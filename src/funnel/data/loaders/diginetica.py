"""DIGINETICA (CIKM Cup 2016) item views -> the data contract.

Source: ``train-item-views.csv``, ``;``-separated with a header::

    session_id;user_id;item_id;timeframe;eventdate
    1;NA;81766;526309;2016-05-09

Mapping:

- each view -> one ``click`` event;
- ``ts`` = ``eventdate`` (midnight UTC) + ``timeframe`` milliseconds (the time since the session
  started, as the dataset defines it);
- ``user_id`` = the source ``user_id`` when present, else ``"dg-<session_id>"`` when it is
  ``NA``/empty (most sessions are anonymous), so sessionization keeps anonymous sessions apart;
- ``request_id`` stays null: it means a served request in the contract, which views are not
  (for a known user, sessions are re-derived by the 30-minute rule);
- ``market`` = ``"diginetica"``; ``event_id`` = content hash of
  diginetica|user|item|ts|type|occurrence (the source has no event ids).

No items table: this file has none of the catalog (the catalog files are separate).

Rejected: wrong field count, non-integer session/item id or timeframe, an invalid date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.loaders._common import Fields, as_int, event_table, prefixed, read_lines
from funnel.data.loaders.base import SourceTables
from funnel.exceptions import DataFileError

FAMILY: Final = "diginetica"
MARKET: Final = "diginetica"
COLUMNS: Final = ("session_id", "user_id", "item_id", "timeframe", "eventdate")
ANONYMOUS: Final = ("NA", "")


def load_diginetica(path: Path) -> SourceTables:
    """Read a DIGINETICA item-views CSV (see the module docstring for the mapping)."""
    path = Path(path)
    header, lines = read_lines(path, header=True)
    names = tuple(h.strip().lower() for h in (header or "").split(";"))
    if names != COLUMNS:
        raise DataFileError(
            str(path), f"header is {header!r}, expected {';'.join(COLUMNS)!r}"
        )
    f = Fields(lines, ";", COLUMNS)
    f.require_int("session_id")
    f.require_int("item_id")
    f.require_int("timeframe")
    f.require("eventdate", pc.invert(_is_date(f["eventdate"])), "a date like 2016-05-09")
    dates = pc.strptime(f["eventdate"], format="%Y-%m-%d", unit="ms")

    day_ms = pc.cast(pc.cast(dates, pa.timestamp("ms")), pa.int64())
    ts_ms = pc.add(day_ms, as_int(f["timeframe"]))
    session = prefixed("dg-", f["session_id"])
    anonymous = pc.is_in(f["user_id"], value_set=pa.array(ANONYMOUS, pa.string()))
    user_id = pc.if_else(anonymous, session, f["user_id"])
    events = event_table(
        family=FAMILY,
        path=path,
        rows=f.rows,
        ts_ms=ts_ms,
        user_id=user_id,
        item_id=f["item_id"],
        event_type="click",
        market=MARKET,
    )
    return SourceTables(events=events, rejected=f.rejected())


def _is_date(values: pa.Array) -> pa.Array:
    """True where ``values`` is a real calendar date ``YYYY-MM-DD`` (2016-02-30 is not)."""
    parsed = pc.strptime(values, format="%Y-%m-%d", unit="ms", error_is_null=True)
    # strptime rolls impossible days over (Feb 30 -> Mar 1); formatting back catches that
    return pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), values), False)
