"""GET /suggest, GET /related, GET /hint/{user_id}.

``async`` handlers: lookups take microseconds, less than a hand-off to the thread pool.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query

from funnel.engine import SuggestStage
from funnel.engine.core import Engine
from funnel.serve.deps import EngineDep, StateDep
from funnel.serve.schemas import ErrorBody, HintResponse, Suggestion, SuggestResponse

router = APIRouter(tags=["suggest"])
ERRORS: dict[int | str, dict[str, Any]] = {422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def _suggester(engine: Engine) -> SuggestStage:
    if engine.suggest is None:
        raise HTTPException(503, detail="no suggestion index in this artifact; run 'funnel build'")
    return engine.suggest


def _recent_context(engine: Engine, clicks: tuple[str, ...]) -> tuple[list[str], str | None]:
    attrs = engine.catalog.attributes(list(clicks[-10:]))
    cats = [c for c in attrs.get("category", []) if c]
    markets = [m for m in attrs.get("market", []) if m]
    return list(dict.fromkeys(reversed(cats))), (markets[-1] if markets else None)


@router.get("/suggest", response_model=SuggestResponse, responses=ERRORS)
async def suggest(
    prefix: Annotated[str, Query(min_length=1, max_length=100,
                                 description="What the user has typed so far.")],
    engine: EngineDep,
    state: StateDep,
    user_id: Annotated[str | None, Query(
        min_length=1, max_length=256,
        description="Personalize with the user's query history and recent clicks.")] = None,
    k: Annotated[int, Query(ge=1, le=50, description="How many completions to return.")] = 8,
    previous_query: Annotated[str | None, Query(
        max_length=200, description="The session's previous query: completions that continue "
        "or refine it come first.")] = None,
) -> SuggestResponse:
    """Query completions for a prefix (typos and pinyin included), personalized when a user id
    is given, conditioned on the session's previous query when one is given."""
    t0 = time.perf_counter()
    sug = _suggester(engine)
    cats: list[str] | None = None
    market = None
    if user_id:
        recent = state.get(user_id)
        if recent.clicks:
            cats, market = _recent_context(engine, recent.clicks)
    k = min(k, sug.max_completions)  # the index keeps this many per prefix: clamp, don't fail
    texts, scores = sug.complete(prefix, k, user_id=user_id, categories=cats, market=market,
                                 previous_query=previous_query)
    out = [Suggestion(text=t, score=float(s)) for t, s in zip(texts, scores, strict=True)]
    return SuggestResponse(
        suggestions=out, timings_ms={"suggest": (time.perf_counter() - t0) * 1e3}
    )


@router.get("/related", response_model=SuggestResponse, responses=ERRORS)
async def related(
    query: Annotated[str, Query(min_length=1, max_length=200,
                                description="The query to find related queries for.")],
    engine: EngineDep,
    k: Annotated[int, Query(ge=1, le=50, description="How many related queries to return.")] = 8,
) -> SuggestResponse:
    """Queries that users who searched this one also searched."""
    t0 = time.perf_counter()
    texts = _suggester(engine).related(query, k)
    out = [Suggestion(text=t, score=float(len(texts) - i)) for i, t in enumerate(texts)]
    return SuggestResponse(
        suggestions=out, timings_ms={"related": (time.perf_counter() - t0) * 1e3}
    )


@router.get("/hint/{user_id}", response_model=HintResponse, responses=ERRORS)
async def hint(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    engine: EngineDep,
    state: StateDep,
) -> HintResponse:
    """The query to show greyed out in an empty search box for this user."""
    t0 = time.perf_counter()
    recent = state.get(user_id)
    cats, market = _recent_context(engine, recent.clicks) if recent.clicks else (None, None)
    hints = _suggester(engine).hint(user_id, 1, categories=cats, market=market)
    return HintResponse(
        hint=hints[0] if hints else None, timings_ms={"hint": (time.perf_counter() - t0) * 1e3}
    )
