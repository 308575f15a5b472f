"""POST /events: validate, append durably, and apply to the users' online state at once."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException

from funnel.serve.deps import ServicesDep, SettingsDep, StateDep
from funnel.serve.schemas import ErrorBody, EventsRequest, EventsResponse

router = APIRouter(tags=["events"])


@router.post(
    "/events",
    response_model=EventsResponse,
    responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def post_events(
    body: EventsRequest, state: StateDep, services: ServicesDep, settings: SettingsDep
) -> EventsResponse:
    """Record behaviour events: the users' online state changes at once (the next list reflects
    a click) and the events are spooled to the event store for the next build."""
    if len(body.events) > settings.max_events_per_request:
        raise HTTPException(
            413, detail=f"at most {settings.max_events_per_request} events per request"
        )
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for i, ev in enumerate(body.events):
        if ev.event_type == "search" and not ev.query:
            raise HTTPException(422, detail=f"events[{i}]: search events need a query")
        if ev.event_type != "search" and not ev.item_id:
            raise HTTPException(422, detail=f"events[{i}]: {ev.event_type} events need an item_id")
        ts = ev.ts or now
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        row = ev.model_dump()
        row["event_id"] = ev.event_id or f"srv-{uuid.uuid4().hex}"
        row["ts"] = ts.isoformat()
        rows.append(row)
    services.spool.append(rows)  # durable before we answer
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row, ev in zip(rows, body.events, strict=True):
        ts = ev.ts or now
        by_user[row["user_id"]].append({**row, "ts_ms": int(ts.timestamp() * 1000)})
    for user, events in by_user.items():
        state.apply(user, events)
    services.metrics.inc("funnel_events_total", {}, len(rows), "Events accepted by POST /events")
    return EventsResponse(accepted=len(rows), users_updated=len(by_user))
