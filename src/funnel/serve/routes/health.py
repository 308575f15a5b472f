"""GET /health, GET /metrics, GET /meta, POST /admin/reload, GET / (the web page)."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from funnel.serve.deps import AdminDep, EngineDep, ServicesDep, get_app_settings, is_admin
from funnel.serve.schemas import ErrorBody, HealthResponse, ReloadResponse
from funnel.serve.settings import Settings

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=HealthResponse)
async def health(engine: EngineDep) -> HealthResponse:
    """Liveness, the loaded artifact version and its catalog size."""
    return HealthResponse(status="ok", version=engine.version, items=len(engine.catalog))


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(services: ServicesDep) -> PlainTextResponse:
    """Prometheus text metrics: requests, latencies per route and stage, the loaded version."""
    return PlainTextResponse(services.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/meta")
async def meta(
    engine: EngineDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, object]:
    """What the web page needs to offer: markets, and a few users with history when the
    server runs as a demo (``--demo-users``) or the caller holds the admin token: they are
    real users' ids, not for anyone who asks."""
    shown = settings.demo_users or is_admin(settings, authorization)
    return {
        "version": engine.version,
        "markets": engine.catalog.markets,
        "users": engine.catalog.demo_users if shown else [],
    }


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def reload(_: AdminDep, services: ServicesDep) -> ReloadResponse:
    """Load the workspace's newest artifact (bearer token required); requests keep being served
    by the old one until the new one is ready."""
    try:
        version, previous = await run_in_threadpool(services.holder.reload)
    except Exception as err:
        raise HTTPException(
            503, detail=f"reload failed, still serving the old version: {err}"
        ) from None
    return ReloadResponse(version=version, previous=previous)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    html = resources.files("funnel.serve").joinpath("static/index.html").read_text("utf-8")
    return HTMLResponse(html)
