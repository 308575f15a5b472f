"""POST /search, GET /recommend/{user_id}, GET /similar/{item_id}.

The handlers are ``async`` and call the engine inline on the event loop on purpose. The work is
CPU-bound Python that holds the GIL, so a thread pool gives no parallelism inside one process
(``--workers`` does that, one process per core); it only adds two thread hand-offs per request
and moves the request to a thread whose core's caches are cold. Requests in one worker run one
after another, which is what a CPU-bound worker does anyway.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response
from pydantic_core import to_json

from funnel.engine.core import Engine, StageResult, UnknownItemError
from funnel.features.personalization import RecentActions
from funnel.serve.deps import ServingDep
from funnel.serve.metrics import Metrics, labels_key
from funnel.serve.schemas import ErrorBody, ListResponse, SearchRequest

router = APIRouter(tags=["search"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}}
_DESCRIBED = ("title", "brand", "category", "market", "price")


def now_ms() -> int:
    """The request's time for the ranker's point-in-time session features (wall clock)."""
    return time.time_ns() // 1_000_000


def to_response(engine: Engine, result: StageResult, *,
                state_clicks: int | None = None) -> Response:
    """The :class:`ListResponse` body, encoded straight to JSON bytes.

    Building and re-validating a pydantic model per item cost more than ranking 20 items; the
    route still declares ``response_model=ListResponse`` (the OpenAPI schema clients and
    schemathesis check), and ``tests/serve`` validates these bodies against that model. The
    bytes come from pydantic-core's encoder: ~8x less CPU than ``json.dumps`` on this body, the
    same bytes for it, and a non-finite float anywhere becomes ``null`` as the model would
    write it (instead of invalid JSON).
    """
    described = engine.catalog.describe_many(list(result.item_ids), _DESCRIBED)
    debug = result.debug
    items = []
    for i, (item, score, kind) in enumerate(
        zip(result.item_ids, result.scores, result.kinds, strict=True)
    ):
        about = described[i]
        items.append({
            "item_id": item,
            "score": float(score),  # a numpy scalar; to_json writes NaN / inf as null
            "title": about.get("title"),
            "brand": about.get("brand"),
            "category": about.get("category"),
            "market": about.get("market"),
            "price": about.get("price"),
            "sponsored": kind == "sponsored",
            "debug": debug[i] if debug is not None else None,
        })
    body = {
        "items": items,
        "timings_ms": result.timings_ms,
        "version": engine.version,
        "request_id": result.request_id,
        "match": result.match,
        "state_clicks": state_clicks,
    }
    return Response(to_json(body, inf_nan_mode="null"), media_type="application/json")


def _observe(metrics: Metrics, route: str, result: StageResult) -> None:
    samples = [(labels_key({"route": route, "stage": stage}), ms)  # label sets are cached
               for stage, ms in result.timings_ms.items()]
    metrics.observe_many_ms(
        "funnel_stage_latency_ms", samples, "Latency of each funnel stage in milliseconds")


@router.post("/search", response_model=ListResponse, responses=ERRORS)
async def search(body: SearchRequest, serving: ServingDep) -> Response:
    """Search (or, with an empty query, browse): recall -> rank -> re-rank for the user's
    online state. The response says how the query matched (`match`); with no match the list is
    the popular fallback."""
    settings, engine = serving.settings, serving.engine
    if len(body.query) > settings.max_query_chars:
        raise HTTPException(422, detail=f"query longer than {settings.max_query_chars} characters")
    if body.k > settings.max_k:
        raise HTTPException(422, detail=f"k must be <= {settings.max_k}")
    # an anonymous visitor has no online state: no store round trip for it
    recent = serving.state.get(body.user_id) if body.user_id else RecentActions(
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
        now_ms=now_ms(),
    )
    _observe(serving.metrics, "search", result)
    return to_response(engine, result,
                       state_clicks=len(recent.clicks) if body.user_id else None)


@router.get("/recommend/{user_id}", response_model=ListResponse, responses=ERRORS)
async def recommend(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    serving: ServingDep,
    k: Annotated[int, Query(ge=1, le=200, description="How many items to return.")] = 20,
    market: Annotated[str | None, Query(
        min_length=1, max_length=256,
        description="Only items of this market (default: the session's market, else all).")
    ] = None,
    debug: Annotated[bool, Query(
        description="Add each item's provenance, stage scores and features.")] = False,
) -> Response:
    """The browse feed for a user: candidates from the session in progress (co-visitation,
    session rules, vectors) and popularity, ranked with the user's state, without items the
    session already clicked."""
    engine = serving.engine
    recent = serving.state.get(user_id)
    result = engine.run(
        query="",
        user_id=user_id,
        market=market,
        filters={},
        k=k,
        state=recent,
        debug=debug,
        now_ms=now_ms(),
    )
    _observe(serving.metrics, "recommend", result)
    return to_response(engine, result, state_clicks=len(recent.clicks))


@router.get("/similar/{item_id}", response_model=ListResponse, responses=ERRORS)
async def similar(
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    serving: ServingDep,
    k: Annotated[int, Query(ge=1, le=200, description="How many items to return.")] = 10,
) -> Response:
    """Items like this one (vector neighbours and co-visitation), for a 'similar items'
    panel; the same for every user."""
    engine = serving.engine
    try:
        result = engine.similar(item_id, k)
    except UnknownItemError as err:
        raise HTTPException(404, detail=str(err)) from None
    _observe(serving.metrics, "similar", result)
    return to_response(engine, result)

