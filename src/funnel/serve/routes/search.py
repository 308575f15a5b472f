"""POST /search, GET /recommend/{user_id}, GET /similar/{item_id}.

The handlers are ``async`` and call the engine inline on the event loop on purpose. The work is
CPU-bound Python that holds the GIL, so a thread pool gives no parallelism inside one process
(``--workers`` does that, one process per core); it only adds two thread hand-offs per request
and moves the request to a thread whose core's caches are cold. Requests in one worker run one
after another, which is what a CPU-bound worker does anyway.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response

from funnel.features.personalization import RecentActions
from funnel.serve.deps import EngineDep, ServicesDep, SettingsDep, StateDep
from funnel.serve.engine import Engine, StageResult, UnknownItemError
from funnel.serve.schemas import ErrorBody, ListResponse, SearchRequest

router = APIRouter(tags=["search"])
ERRORS = {404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}
_DESCRIBED = ("title", "brand", "category", "market", "price")


def to_response(engine: Engine, result: StageResult) -> Response:
    """The :class:`ListResponse` body, encoded straight to JSON bytes.

    Building and re-validating a pydantic model per item cost more than ranking 20 items; the
    route still declares ``response_model=ListResponse`` (the OpenAPI schema clients and
    schemathesis check), and ``tests/serve`` validates these bodies against that model.
    """
    items = []
    described = engine.catalog.describe_many(list(result.item_ids), _DESCRIBED)
    for i, (item, score, kind) in enumerate(
        zip(result.item_ids, result.scores, result.kinds, strict=True)
    ):
        entry: dict[str, Any] = {"item_id": item, "score": _number(score)}
        for name in _DESCRIBED:
            entry[name] = described[i].get(name)
        entry["sponsored"] = kind == "sponsored"
        entry["debug"] = _finite(result.debug[i]) if result.debug is not None else None
        items.append(entry)
    body = {
        "items": items,
        "timings_ms": result.timings_ms,
        "version": engine.version,
        "request_id": result.request_id,
    }
    return Response(
        json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(),
        media_type="application/json",
    )


def _number(value: Any) -> float | None:
    """A float for JSON: NaN and infinities become null, as pydantic would serialize them."""
    value = float(value)
    return value if math.isfinite(value) else None


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _observe(services: object, route: str, result: StageResult) -> None:
    metrics = services.metrics  # type: ignore[attr-defined]
    for stage, ms in result.timings_ms.items():
        metrics.observe_ms(
            "funnel_stage_latency_ms",
            ms,
            {"route": route, "stage": stage},
            "Latency of each funnel stage in milliseconds",
        )


@router.post("/search", response_model=ListResponse, responses=ERRORS)
async def search(
    body: SearchRequest,
    engine: EngineDep,
    state: StateDep,
    services: ServicesDep,
    settings: SettingsDep,
) -> Response:
    if len(body.query) > settings.max_query_chars:
        raise HTTPException(422, detail=f"query longer than {settings.max_query_chars} characters")
    if body.k > settings.max_k:
        raise HTTPException(422, detail=f"k must be <= {settings.max_k}")
    # an anonymous visitor has no online state: no store round trip for it
    recent = state.get(body.user_id) if body.user_id else RecentActions(
        max_len=settings.state_max_actions
    )
    result = engine.run(
        query=body.query.strip(),
        user_id=body.user_id,
        market=body.market,
        filters=body.filters,
        k=body.k,
        state=recent,
        debug=body.debug,
    )
    _observe(services, "search", result)
    return to_response(engine, result)


@router.get("/recommend/{user_id}", response_model=ListResponse, responses=ERRORS)
async def recommend(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    engine: EngineDep,
    state: StateDep,
    services: ServicesDep,
    k: Annotated[int, Query(ge=1, le=200)] = 20,
    market: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    debug: bool = False,
) -> Response:
    result = engine.run(
        query="",
        user_id=user_id,
        market=market,
        filters={},
        k=k,
        state=state.get(user_id),
        debug=debug,
    )
    _observe(services, "recommend", result)
    return to_response(engine, result)


@router.get("/similar/{item_id}", response_model=ListResponse, responses=ERRORS)
async def similar(
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    engine: EngineDep,
    services: ServicesDep,
    k: Annotated[int, Query(ge=1, le=200)] = 10,
) -> Response:
    try:
        result = engine.similar(item_id, k)
    except UnknownItemError as err:
        raise HTTPException(404, detail=str(err)) from None
    _observe(services, "similar", result)
    return to_response(engine, result)
