"""YooChoose (RecSys Challenge 2015) and session-rec click files -> the data contract.

Three layouts, told apart by the first line:

- session-rec TSV with a header naming ``SessionId``, ``ItemId`` and ``Time`` (epoch seconds,
  integer or decimal); other columns are ignored. This is what session-based recommendation
  code (session-rec, GRU4Rec) writes after preprocessing YooChoose or DIGINETICA;
- raw ``yoochoose-clicks.dat``: ``session,timestamp,item,category`` with an ISO-8601 timestamp
  (``2014-04-07T10:51:09.277Z``), no header;
- raw ``yoochoose-buys.dat``: ``session,timestamp,item,price,quantity``, no header.

Mapping:

- clicks -> ``click``; buys -> ``booking`` with ``price`` = the unit price (0 in the source
  means unknown -> null; quantity is not kept);
- ``user_id`` = ``"yc-<session>"`` (YooChoose has no user ids; a session is the only identity);
- ``ts`` = the source time in UTC; ``market`` = ``"yoochoose"``; ``event_id`` = content hash
  of yoochoose|user|item|ts|type|occurrence (the source has no event ids);
- raw clicks also give ``items``: the click ``category`` column is the context of the click:
  ``1``-``12`` a real category, an 8-10 digit number a brand, ``S`` a special offer, ``0``
  unknown. Per item, ``category`` = its last seen real category and ``brand`` = its last seen
  brand (null if never seen). Items seen only with ``0``/``S`` get a row with both null.

Rejected: wrong field count, non-integer session/item id, an unparseable time or price.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.loaders._fields import Fields, as_float, prefixed, seconds_to_ms
from funnel.data.loaders._read import first_line, read_lines
from funnel.data.loaders._tables import contract_table, event_table
from funnel.data.loaders.base import SourceTables
from funnel.exceptions import DataFileError

FAMILY: Final = "yoochoose"
MARKET: Final = "yoochoose"
SESSION_REC_COLUMNS: Final = ("SessionId", "ItemId", "Time")
CLICK_COLUMNS: Final = ("session", "timestamp", "item", "category")
BUY_COLUMNS: Final = ("session", "timestamp", "item", "price", "quantity")


def load_yoochoose(path: Path) -> SourceTables:
    """Read a YooChoose / session-rec click file (see the module docstring for the layouts)."""
    path = Path(path)
    head = first_line(path)
    if "\t" in head and all(c in head.split("\t") for c in SESSION_REC_COLUMNS):
        return _load_session_rec(path)
    n_fields = head.count(",") + 1
    if n_fields == len(CLICK_COLUMNS):
        return _load_raw(path, CLICK_COLUMNS)
    if n_fields == len(BUY_COLUMNS):
        return _load_raw(path, BUY_COLUMNS)
    raise DataFileError(
        str(path),
        f"first line {head[:80]!r} is neither a session-rec header with "
        f"{'/'.join(SESSION_REC_COLUMNS)} (TAB-separated) nor a raw YooChoose clicks "
        "(session,timestamp,item,category) or buys (session,timestamp,item,price,quantity) line",
    )


def _load_session_rec(path: Path) -> SourceTables:
    header, lines = read_lines(path, header=True)
    names = [h.strip() for h in (header or "").split("\t")]
    f = Fields(lines, "\t", names)
    f.require_int("SessionId")
    f.require_int("ItemId")
    f.require_epoch_seconds("Time")
    events = event_table(
        family=FAMILY,
        path=path,
        rows=f.rows,
        ts_ms=seconds_to_ms(f["Time"]),
        user_id=prefixed("yc-", f["SessionId"]),
        item_id=f["ItemId"],
        event_type="click",
        market=MARKET,
    )
    return SourceTables(events=events, rejected=f.rejected())


def _load_raw(path: Path, columns: tuple[str, ...]) -> SourceTables:
    _, lines = read_lines(path, header=False)
    f = Fields(lines, ",", columns)
    f.require_int("session")
    f.require_int("item")
    f.require("timestamp", pc.is_null(iso_ms(f["timestamp"])), ISO_EXPECTED)
    is_buys = columns == BUY_COLUMNS
    if is_buys:
        f.require_float("price")
        f.require_int("quantity")
    common = {
        "family": FAMILY,
        "path": path,
        "rows": f.rows,
        "ts_ms": iso_ms(f["timestamp"]),
        "user_id": prefixed("yc-", f["session"]),
        "item_id": f["item"],
        "market": MARKET,
    }
    if is_buys:
        price = as_float(f["price"])
        price = pc.if_else(pc.equal(price, 0.0), pa.scalar(None, pa.float64()), price)
        events = event_table(**common, event_type="booking", price=price)
        return SourceTables(events=events, rejected=f.rejected())
    events = event_table(**common, event_type="click")
    return SourceTables(items=_items(path, f), events=events, rejected=f.rejected())


ISO_EXPECTED: Final = "an ISO-8601 UTC time like 2014-04-07T10:51:09.277Z"


def iso_ms(values: pa.Array) -> pa.Array:
    """``YYYY-MM-DDTHH:MM:SS[.fff][Z]`` strings -> int64 epoch ms, null where unparseable.

    Vectorized and null-safe per element (a plain cast fails the whole column on one bad value).
    A time without ``Z`` is taken as UTC; other offsets are not accepted.
    """
    head = pc.utf8_slice_codeunits(values, 0, 19)
    whole = pc.strptime(head, format="%Y-%m-%dT%H:%M:%S", unit="ms", error_is_null=True)
    # strptime rolls impossible dates over (April 31 -> May 1); formatting back catches that
    seconds = pc.cast(whole, pa.timestamp("s"))  # whole seconds: strftime prints no fraction
    real = pc.equal(pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S"), head)
    whole = pc.if_else(pc.fill_null(real, False), whole, pa.scalar(None, whole.type))
    rest = pc.extract_regex(pc.utf8_slice_codeunits(values, 19), r"^(?:\.(?P<frac>[0-9]{1,9}))?Z?$")
    frac = pc.struct_field(rest, "frac")
    frac = pc.utf8_slice_codeunits(pc.utf8_rpad(frac, 3, "0"), 0, 3)
    ms = pc.cast(pc.if_else(pc.equal(frac, ""), "0", frac), pa.int64())
    out = pc.add(pc.cast(pc.cast(whole, pa.timestamp("ms")), pa.int64()), ms)
    return pc.if_else(pc.is_null(rest), pa.scalar(None, pa.int64()), out)


def _items(path: Path, f: Fields) -> pa.Table:
    ctx = f["category"]
    is_category = pc.match_substring_regex(ctx, r"^([1-9]|1[0-2])$")
    is_brand = pc.match_substring_regex(ctx, r"^[0-9]{8,10}$")
    table = pa.table(
        {
            "item_id": f["item"],
            "category": pc.if_else(is_category, ctx, None),
            "brand": pc.if_else(is_brand, ctx, None),
            "row": f.rows,
        }
    )
    agg = table.group_by("item_id", use_threads=False).aggregate(
        [("category", "last"), ("brand", "last"), ("row", "min")]
    )
    agg = agg.sort_by([("row_min", "ascending")])
    return contract_table(
        "items",
        {
            "item_id": agg["item_id"],
            "category": agg["category_last"],
            "brand": agg["brand_last"],
            "market": MARKET,
        },
        path=path,
        rows=agg["row_min"],
    )

