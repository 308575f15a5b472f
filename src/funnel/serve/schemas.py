"""HTTP request and response models (separate from domain types)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from funnel.data.validate import MAX_TS, MIN_TS

EventType = Literal["impression", "click", "add_to_cart", "booking", "search"]


class SearchRequest(BaseModel):
    """A search (or, with an empty query, a browse feed) for one visitor."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "barcelona loft", "user_id": "u0000086", "k": 10},
        {"query": "cabin", "market": "paris", "filters": {"category": "cabin"}, "k": 5,
         "debug": True},
    ]})

    query: str = Field(default="", max_length=200, description="Free text; empty for browse.")
    user_id: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="Who asks: their online state (recent clicks, bookings) personalizes the "
        "list. Omit for an anonymous visitor.")
    market: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="Only items of this market; default: the market the query names, if any.")
    filters: dict[str, str] = Field(
        default_factory=dict, max_length=10,
        description="Exact attribute filters, e.g. {\"category\": \"cabin\"}.")
    k: int = Field(default=20, ge=1, le=200, description="How many items to return.")
    debug: bool = Field(
        default=False,
        description="Add each item's recall sources, features and stage scores (slower).")


class ScoredItem(BaseModel):
    """One item of a served list, best first."""

    item_id: str = Field(description="The catalog's item id.")
    score: float = Field(description="The final score: calibrated pCTR, or recall's fused "
                         "score where the artifact serves recall's order.")
    title: str | None = Field(default=None, description="From the catalog, if it has one.")
    brand: str | None = Field(default=None, description="From the catalog (brand or host).")
    category: str | None = Field(default=None, description="From the catalog.")
    market: str | None = Field(default=None, description="From the catalog or the events.")
    price: float | None = Field(default=None, description="From the catalog or the events.")
    sponsored: bool = Field(default=False, description="Placed in a sponsored slot (eCPM).")
    debug: dict[str, object] | None = Field(
        default=None, description="With debug=true: recall sources, features, stage scores.")


class ListResponse(BaseModel):
    """A served list: search, recommendations or similar items."""

    items: list[ScoredItem] = Field(description="Best first.")
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per stage (recall and each source, rank, rerank, total).")
    version: str = Field(description="The artifact version that answered.")
    request_id: str = Field(
        description="Send it back with impression and click events to tie them to this list.")
    match: Literal["exact", "partial", "none"] | None = Field(
        default=None,
        description="A search's match with its query: 'exact' (an item matches every term), "
        "'partial' (some terms, or items the logs tie to the query), 'none' (nothing matched: "
        "the items are the popular fallback). Null for recommendations and similar items.",
    )
    state_clicks: int | None = Field(
        default=None,
        description="How many of the user's clicks the online state held and the ranker read "
        "for this list (its last actions; see /events): what 'personalized for you' rests on. "
        "Null for anonymous searches and similar items.",
    )


class Suggestion(BaseModel):
    """One query suggestion."""

    text: str = Field(description="The suggested query.")
    score: float = Field(description="Higher is better; comparable within one response.")


class SuggestResponse(BaseModel):
    """Query completions or related queries, best first."""

    suggestions: list[Suggestion] = Field(description="Best first.")
    timings_ms: dict[str, float] = Field(description="Milliseconds of the lookup.")


class HintResponse(BaseModel):
    """The query to show greyed out in an empty search box."""

    hint: str | None = Field(description="Null when nothing fits this user.")
    timings_ms: dict[str, float] = Field(description="Milliseconds of the lookup.")


class EventIn(BaseModel):
    """One behaviour event, in the data contract's shape (docs/data-contract.md)."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="Unique id; sending an event twice with one id stores it once. Default: "
        "assigned by the server.")
    ts: datetime | None = Field(default=None, description="Defaults to the server's receive time.")
    user_id: str = Field(min_length=1, max_length=256, description="Whose event it is.")
    event_type: EventType = Field(
        description="impression, click, add_to_cart, booking or search.")
    item_id: str | None = Field(default=None, min_length=1, max_length=256,
                                description="The item (all types but search).")
    query: str | None = Field(default=None, min_length=1, max_length=200,
                              description="The search text (search events).")
    request_id: str | None = Field(
        default=None, min_length=1, max_length=256,
        description="The served list's request_id: ties impressions and clicks together "
        "(skips are items shown above a click).")
    position: int | None = Field(default=None, ge=0, le=10_000,
                                 description="Position in the served list (impressions, clicks).")
    market: str | None = Field(default=None, min_length=1, max_length=256,
                               description="The item's market, if known.")
    price: float | None = Field(default=None, ge=0, le=1e9,
                                description="The price shown or paid, if known.")
    dwell_ms: int | None = Field(
        default=None, ge=0, le=86_400_000,
        description="Time on the item's page (clicks); 60 s or more is a long click.")

    @field_validator("ts")
    @classmethod
    def _ts_in_ingest_bounds(cls, value: datetime | None) -> datetime | None:
        """The bounds ingest quarantines by: an event the API accepts is one ingest keeps."""
        if value is None:
            return value
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        low, high = (datetime.fromisoformat(t).replace(tzinfo=UTC) for t in (MIN_TS, MAX_TS))
        if not low <= aware < high:
            raise ValueError(f"ts {value.isoformat()} is outside {MIN_TS}..{MAX_TS}")
        return value


class EventsRequest(BaseModel):
    """A batch of events: they update the users' online state at once and are spooled to the
    event store."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"events": [
            {"user_id": "u0000086", "event_type": "click", "item_id": "i0000124",
             "request_id": "3ff8dc2cfc5f472a", "position": 1, "dwell_ms": 75000},
            {"user_id": "u0000086", "event_type": "search", "query": "barcelona loft"},
        ]},
    ]})

    events: list[EventIn] = Field(min_length=1, max_length=1000,
                                  description="1 to 1,000 events, any order.")


class EventsResponse(BaseModel):
    """What the server did with a batch."""

    accepted: int = Field(description="Events accepted (spooled for the event store).")
    users_updated: int = Field(description="Users whose online state changed.")


class ErrorBody(BaseModel):
    """Every error: one line saying what was wrong and, where there is one, the fix."""

    detail: str = Field(description="What was wrong, in one line.")


class HealthResponse(BaseModel):
    """Liveness and the loaded model."""

    status: Literal["ok"] = Field(description="Always ok when the server answers.")
    version: str | None = Field(description="The artifact version loaded; null before a build.")
    items: int = Field(description="Items in the loaded catalog.")


class ReloadResponse(BaseModel):
    """The artifact version now served."""

    version: str = Field(description="The version loaded now.")
    previous: str | None = Field(description="The version served before; null if none.")
