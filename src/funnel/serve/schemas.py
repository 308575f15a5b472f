"""HTTP request and response models (separate from domain types)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from funnel.data.validate import MAX_TS, MIN_TS

EventType = Literal["impression", "click", "add_to_cart", "booking", "search"]
Id = Field(min_length=1, max_length=256)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(default="", max_length=200, description="Free text; empty for browse.")
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    market: str | None = Field(default=None, min_length=1, max_length=256)
    filters: dict[str, str] = Field(default_factory=dict, max_length=10)
    k: int = Field(default=20, ge=1, le=200)
    debug: bool = False


class ScoredItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    brand: str | None = None
    category: str | None = None
    market: str | None = None
    price: float | None = None
    sponsored: bool = False
    debug: dict[str, object] | None = None


class ListResponse(BaseModel):
    items: list[ScoredItem]
    timings_ms: dict[str, float]
    version: str
    request_id: str
    match: Literal["exact", "partial", "none"] | None = Field(
        default=None,
        description="A search's match with its query: 'exact' (an item matches every term), "
        "'partial' (some terms, or items the logs tie to the query), 'none' (nothing matched: "
        "the items are the popular fallback). Null for recommendations and similar items.",
    )


class Suggestion(BaseModel):
    text: str
    score: float


class SuggestResponse(BaseModel):
    suggestions: list[Suggestion]
    timings_ms: dict[str, float]


class HintResponse(BaseModel):
    hint: str | None
    timings_ms: dict[str, float]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(default=None, min_length=1, max_length=256)
    ts: datetime | None = Field(default=None, description="Defaults to the server's receive time.")
    user_id: str = Id
    event_type: EventType
    item_id: str | None = Field(default=None, min_length=1, max_length=256)
    query: str | None = Field(default=None, min_length=1, max_length=200)
    request_id: str | None = Field(default=None, min_length=1, max_length=256)
    position: int | None = Field(default=None, ge=0, le=10_000)
    market: str | None = Field(default=None, min_length=1, max_length=256)
    price: float | None = Field(default=None, ge=0, le=1e9)
    dwell_ms: int | None = Field(default=None, ge=0, le=86_400_000)

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
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventsResponse(BaseModel):
    accepted: int
    users_updated: int


class ErrorBody(BaseModel):
    detail: str


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str | None
    items: int


class ReloadResponse(BaseModel):
    version: str
    previous: str | None
