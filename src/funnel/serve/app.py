"""The FastAPI app factory: settings in, a thin typed HTTP layer over the engine out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funnel.compute_threads import limit_threads
from funnel.exceptions import FunnelError
from funnel.serve.fanout import AdminFanOut, peers_from_env
from funnel.serve.holder import EngineHolder
from funnel.serve.metrics import Metrics, labels_key
from funnel.serve.routes import events, health, search, suggest
from funnel.serve.settings import Settings, get_settings
from funnel.serve.spool import EventSpool
from funnel.serve.state import open_state
from funnel.workspace import Workspace

log = logging.getLogger(__name__)


def _validation_detail(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else e.get("msg", "invalid"))
    return "; ".join(parts) or "invalid request"


async def _watch(app: FastAPI, every_s: float) -> None:
    holder: EngineHolder = app.state.holder
    while True:
        await asyncio.sleep(every_s)
        if holder.changed():
            try:
                await run_in_threadpool(holder.reload)
            except Exception as err:  # keep serving the old version
                log.warning("artifact watch: reload failed: %s", err)


async def _flush_spool(app: FastAPI, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        await run_in_threadpool(app.state.spool.flush_to_store, app.state.workspace)


class LimitsAndMetrics:
    """Body-size limit, request counters and latency histograms, and an ``X-Funnel-Time-Ms``
    header, as plain ASGI: Starlette's ``@app.middleware("http")`` runs every request through
    an extra task and a response stream, a measurable share of a millisecond-scale request.
    Label sets are rendered once (:func:`labels_key` caches them), not per request."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, length in scope["headers"]:
            if name == b"content-length":
                if not length.isdigit() or int(length) > self.max_body_bytes:
                    response = JSONResponse(
                        status_code=413,
                        content={"detail": f"request body larger than {self.max_body_bytes} bytes"},
                    )
                    await response(scope, receive, send)
                    return
                break
        started = time.perf_counter()
        status = 500
        received = 0

        async def limited_receive() -> Message:
            """A body without Content-Length (chunked) is counted as it streams: over the
            limit, reading stops with a 413 (a 52 MB chunked body was read whole). uvicorn
            discards the rest as it arrives; closing instead would reset the connection under
            a client still sending, which then never sees the 413 (httpx, most clients)."""
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(
                        413, detail=f"request body larger than {self.max_body_bytes} bytes")
            return message

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                ms = (time.perf_counter() - started) * 1000.0
                headers = [*message.get("headers", ()), (b"x-funnel-time-ms", b"%.2f" % ms)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, timed_send)
        finally:
            ms = (time.perf_counter() - started) * 1000.0
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            metrics = self.metrics
            metrics.inc_key(
                "funnel_requests_total",
                labels_key({"route": route, "method": method, "status": str(status)}),
                1, "HTTP requests",
            )
            metrics.observe_many_ms(
                "funnel_request_latency_ms",
                ((labels_key({"route": route, "method": method}), ms),),
                "HTTP request latency in milliseconds",
            )


def create_app(
    settings: Settings | None = None, *, load_on_start: bool = True, flush_every_s: float = 10.0
) -> FastAPI:
    """Build the app; models load once at start-up (lifespan) and handlers only read them."""
    settings = settings or get_settings()
    workspace = Workspace.open(settings.workspace)
    limit_threads(settings.torch_threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_on_start:
            try:
                await run_in_threadpool(app.state.holder.reload)
            except FunnelError as err:
                log.warning("starting without a model: %s", err)
        app.state.metrics.set_up(True)
        tasks = []
        if settings.watch_artifacts_s > 0:
            tasks.append(asyncio.create_task(_watch(app, settings.watch_artifacts_s)))
        if flush_every_s > 0:
            tasks.append(asyncio.create_task(_flush_spool(app, flush_every_s)))
        try:
            yield
        finally:
            app.state.metrics.set_up(False)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            app.state.spool.close()
            if flush_every_s > 0:  # what this worker accepted reaches the store now
                await run_in_threadpool(app.state.spool.flush_to_store, app.state.workspace)
            app.state.holder.close()

    app = FastAPI(
        title="funnel",
        version="0.1.0",
        lifespan=lifespan,
        description="Search and recommendation for marketplaces: recall -> rank -> re-rank.",
        docs_url=None,  # served below from a package, not a CDN: /docs works offline
        redoc_url=None,
    )
    _self_hosted_docs(app)
    app.state.settings = settings
    app.state.workspace = workspace
    app.state.metrics = Metrics()
    app.state.state = open_state(
        settings.state_url,
        max_actions=settings.state_max_actions,
        ttl_s=settings.state_ttl_s,
        max_users=settings.state_max_users,
    )
    app.state.spool = EventSpool(workspace.root / "spool")
    app.state.holder = EngineHolder(
        workspace.root, recall_k=settings.recall_k, rank_k=settings.rank_k
    )

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _validation_detail(err)})

    @app.exception_handler(FunnelError)
    async def on_domain_error(_: Request, err: FunnelError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(err)})

    for module in (search, suggest, events, health):
        app.include_router(module.router)
    peers = peers_from_env()  # the other workers behind HAProxy: admin requests reach them
    if peers:
        app.add_middleware(AdminFanOut, peers=peers)
    app.add_middleware(LimitsAndMetrics, metrics=app.state.metrics,
                       max_body_bytes=settings.max_body_bytes)
    return app


DOCS_ASSETS = "/docs-assets"


def _self_hosted_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their JavaScript and CSS from the
    ``fastapi-offline`` package (FastAPI's documented way to self-host them): the pages work
    on a machine without internet, where the CDN copies left ``/docs`` blank."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    spec = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=spec, title="funnel API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=spec, title="funnel API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                              with_google_fonts=False)
