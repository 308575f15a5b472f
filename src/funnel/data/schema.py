"""The data contract: pyarrow schemas for items, users and events.

Every loader maps its source onto these schemas, every later stage reads them. Timestamps are
UTC with millisecond precision. ``attributes`` columns hold a JSON object as text so that CSV,
JSON Lines and Parquet sources carry them the same way.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

EVENT_TYPES: Final[tuple[str, ...]] = ("impression", "click", "add_to_cart", "booking", "search")
"""Known event types. ``search`` carries a query; the others carry an item."""

ITEM_EVENT_TYPES: Final[frozenset[str]] = frozenset(
    {"impression", "click", "add_to_cart", "booking"}
)

TIMESTAMP = pa.timestamp("ms", tz="UTC")

ITEM_SCHEMA: Final = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("category", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("market", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("bid", pa.float64()),
        pa.field("attributes", pa.string()),
        pa.field("created_at", TIMESTAMP),
    ]
)

USER_SCHEMA: Final = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("attributes", pa.string()),
    ]
)

EVENT_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts", TIMESTAMP, nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("item_id", pa.string()),
        pa.field("query", pa.string()),
        pa.field("request_id", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("market", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("dwell_ms", pa.int64()),
    ]
)

TRUTH_SCHEMA: Final = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("p_click", pa.float64()),
        pa.field("p_attract", pa.float64()),
        pa.field("p_book", pa.float64()),
        pa.field("intent_category", pa.string()),
        pa.field("intent_brand", pa.string()),
        pa.field("intent_market", pa.string()),
    ]
)
"""Ground truth the synthetic generator knows and real data never has.

``p_click`` is the true click probability of an impression in its list (position bias and list
context included: the scan stopping above it, same-brand items shown above it); ``p_attract``
the item's context-free attraction (no position, no list; null on events other than impressions
and clicks), from which the expected clicks of any reordering of the list follow exactly;
``p_book`` the true probability that a click ends in a booking of that item; the ``intent_*``
fields say what a search request was really looking for (its relevant items).
"""

SCHEMAS: Final[dict[str, pa.Schema]] = {
    "items": ITEM_SCHEMA,
    "users": USER_SCHEMA,
    "events": EVENT_SCHEMA,
    "truth": TRUTH_SCHEMA,
}

PRIMARY_KEYS: Final[dict[str, str]] = {
    "items": "item_id",
    "users": "user_id",
    "events": "event_id",
    "truth": "event_id",
}

LIMITS: Final[dict[str, float]] = {
    "max_id_len": 256,
    "max_text_len": 2048,
    "max_price": 1e9,
    "max_position": 10_000,
    "max_dwell_ms": 24 * 3600 * 1000,
}
"""Sane ranges enforced by validation; rows outside go to quarantine."""


def empty_table(kind: str) -> pa.Table:
    """An empty table of the contract schema ``kind`` (items, users, events, truth)."""
    return SCHEMAS[kind].empty_table()
