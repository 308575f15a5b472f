"""Taobao UserBehavior (Alibaba Tianchi) -> the data contract.

Source: one CSV line per action, no header (a header line naming ``user_id`` is tolerated)::

    user_id,item_id,category_id,behavior,timestamp
    1,2268318,2520377,pv,1511544070

Mapping:

- ``pv`` (page view) -> ``click``; ``cart`` -> ``add_to_cart``; ``buy`` -> ``booking``;
- ``fav`` (add to favourites) -> ``add_to_cart``: like a cart add it is a saved intent to buy,
  short of a purchase, and stronger than a view; the contract has no separate "favourite" type.
  ``FAV_EVENT`` records the choice.
- ``ts`` = the unix timestamp (seconds) in UTC; ``user_id`` / ``item_id`` are the source ids;
  ``market`` = ``"taobao"`` (one market per source, so market-aware stages work unchanged);
- ``event_id`` = content hash of taobao|user|item|ts|type|occurrence (the source has no ids);
- ``items``: one row per distinct item (first occurrence), ``category`` = ``category_id``.

Rejected: wrong field count, non-integer user/item/category id or timestamp, unknown behavior.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.loaders._fields import Fields, seconds_to_ms
from funnel.data.loaders._read import first_line, read_lines
from funnel.data.loaders._tables import contract_table, event_table, first_rows
from funnel.data.loaders.base import SourceTables

FAMILY: Final = "taobao"
MARKET: Final = "taobao"
COLUMNS: Final = ("user_id", "item_id", "category_id", "behavior", "timestamp")
FAV_EVENT: Final = "add_to_cart"
BEHAVIOR_EVENTS: Final[dict[str, str]] = {
    "pv": "click",
    "cart": "add_to_cart",
    "fav": FAV_EVENT,
    "buy": "booking",
}


def load_taobao(path: Path) -> SourceTables:
    """Read a Taobao UserBehavior CSV (see the module docstring for the mapping)."""
    path = Path(path)
    has_header = first_line(path).lower().startswith("user")
    _, lines = read_lines(path, header=has_header)
    f = Fields(lines, ",", COLUMNS)
    for name in ("user_id", "item_id", "category_id"):
        f.require_int(name)
    f.require_epoch_seconds("timestamp", integer=True)
    f.require_in("behavior", BEHAVIOR_EVENTS)

    # one call for all lines (the type is a column): cart and fav share add_to_cart, and the
    # occurrence count behind the ids must see both, else equal cart/fav lines share an id
    behaviors = pa.array(list(BEHAVIOR_EVENTS), pa.string())
    types = pa.array(list(BEHAVIOR_EVENTS.values()), pa.string())
    event_type = pc.take(types, pc.index_in(f["behavior"], value_set=behaviors))
    events = event_table(
        family=FAMILY,
        path=path,
        rows=f.rows,
        ts_ms=seconds_to_ms(f["timestamp"]),
        user_id=f["user_id"],
        item_id=f["item_id"],
        event_type=event_type,
        market=MARKET,
    )

    items_src = pa.table({"item_id": f["item_id"], "category": f["category_id"], "row": f.rows})
    first = first_rows(items_src, "item_id")
    items = contract_table(
        "items",
        {"item_id": first["item_id"], "category": first["category"], "market": MARKET},
        path=path,
        rows=first["row"],
    )
    return SourceTables(items=items, events=events, rejected=f.rejected())
