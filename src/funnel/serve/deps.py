"""Dependencies handlers declare (STYLE P13): settings, the current engine, state, metrics."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request

from funnel.engine.core import Engine
from funnel.serve.metrics import Metrics
from funnel.serve.settings import Settings
from funnel.serve.state import StateStore

log = logging.getLogger(__name__)

NO_MODEL = ("no model loaded: build one with 'funnel build', then POST /admin/reload (the "
            "server's log names the cause)")

# async on purpose: FastAPI runs a plain ``def`` dependency on the thread pool, a hand-off per
# dependency per request that costs more than these attribute reads do.


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


_logged_causes: set[str] = set()
"""Causes already logged: the proxy's health check asks every second, the log says it once."""


async def get_engine(request: Request) -> Engine:
    try:
        return request.app.state.holder.engine
    except Exception as err:  # no artifact yet, or it failed to load
        # the cause names files on the server: it goes to the server's log, not to a client
        cause = str(err)
        if cause not in _logged_causes:
            _logged_causes.add(cause)
            log.warning("no model loaded: %s", cause)
        raise HTTPException(status_code=503, detail=NO_MODEL) from None


async def get_state(request: Request) -> StateStore:
    return request.app.state.state


async def get_services(request: Request) -> Any:
    return request.app.state


@dataclass(frozen=True, slots=True)
class Serving:
    """Everything a list route (search, recommend, similar) reads, as one dependency.

    FastAPI runs its dependency solver once per declared dependency per request; measured at
    1M items, four separate ones cost ~0.1 ms of a request's CPU, as much as the rest of the
    routing. The engine is read once here, so a reload cannot change it mid-request."""

    engine: Engine
    state: StateStore
    settings: Settings
    metrics: Metrics


async def get_serving(request: Request) -> Serving:
    services = request.app.state
    return Serving(
        engine=await get_engine(request),
        state=services.state,
        settings=services.settings,
        metrics=services.metrics,
    )


def is_admin(settings: Settings, authorization: str | None) -> bool:
    """Whether ``authorization`` is ``Bearer <the admin token>`` (constant-time compare)."""
    if not settings.admin_token:
        return False
    expected = f"Bearer {settings.admin_token}".encode()
    return hmac.compare_digest((authorization or "").encode(), expected)


async def require_admin(
    settings: Annotated[Settings, Depends(get_app_settings)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    if not settings.admin_token:
        raise HTTPException(
            status_code=403, detail="admin endpoints are disabled: set FUNNEL_ADMIN_TOKEN"
        )
    if not is_admin(settings, authorization):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StateDep = Annotated[StateStore, Depends(get_state)]
ServicesDep = Annotated[Any, Depends(get_services)]
AdminDep = Annotated[None, Depends(require_admin)]
ServingDep = Annotated[Serving, Depends(get_serving)]
