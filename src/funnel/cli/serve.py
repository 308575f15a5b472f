"""``funnel serve``: the FastAPI app in uvicorn workers behind HAProxy (uvicorn alone where
HAProxy is not installed, one worker)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from funnel.cli._app import WorkspaceOpt, app, console, fail, say, user_errors, warn
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


@app.command()
def serve(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes behind HAProxy (apt-get install haproxy), which hands each "
            "request to a free worker and enforces the limits and timeouts; with > 1, --state "
            "must be shared (redis-local or redis://) so they share sessions.",
            min=1,
        ),
    ] = 1,
    timeout: Annotated[
        float,
        typer.Option(help="Seconds a worker may take to start answering before HAProxy gives "
                     "up (with more than one worker a search is then retried on another).",
                     min=0.1),
    ] = 30.0,
    state: Annotated[
        str, typer.Option(help="Online state store: memory:// (per worker), redis://host:port/db, "
                          "or redis-local (a private redis-server started and stopped with the "
                          "server; apt-get install redis-server).")
    ] = "memory://",
    admin_token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token for /admin/reload (or FUNNEL_ADMIN_TOKEN).",
            envvar="FUNNEL_ADMIN_TOKEN",
        ),
    ] = None,
    watch: Annotated[
        float, typer.Option(help="Poll artifacts/current every N seconds and reload (0 = off).")
    ] = 0.0,
    demo_users: Annotated[
        bool, typer.Option(
            metavar="", help="List a few active user ids on /meta for the page (a demo).")
    ] = False,
) -> None:
    """Serve search, recommendations, suggestions and the web page over HTTP.

    Open http://HOST:PORT/ for the page, /docs for the API.

    Example: funnel serve --workspace shop --port 8000 --admin-token "$(openssl rand -hex 16)"
    """
    from pydantic import ValidationError

    from funnel.serve.haproxy import EdgeLimits
    from funnel.serve.settings import get_settings
    from funnel.serve.workers import LOCAL_REDIS, serve_workers

    if workers > 1 and state.startswith("memory"):
        # each worker would keep its own sessions: measured, a user's next search was
        # personalized 0 times in 20 with 2 workers, and only a warning said so
        raise fail(f"--workers {workers} needs a shared online state; memory:// is per worker, "
                   f"so a user's next request would miss their clicks: pass --state {LOCAL_REDIS} "
                   "(funnel serve starts a private redis-server) or --state redis://HOST:PORT/0")
    _check_edge(workers, local_redis=state == LOCAL_REDIS)
    with user_errors():
        ws = Workspace.open(workspace)
        ws.artifacts.require_current()
    os.environ["FUNNEL_WORKSPACE"] = str(ws.root.resolve())
    os.environ["FUNNEL_STATE_URL"] = state
    os.environ["FUNNEL_WATCH_ARTIFACTS_S"] = str(watch)
    os.environ["FUNNEL_DEMO_USERS"] = "1" if demo_users else "0"
    if admin_token:
        os.environ["FUNNEL_ADMIN_TOKEN"] = admin_token
    console.print(f"serving {ws.artifacts.require_current().name} at [bold]http://{host}:{port}/[/]")
    say("next", f"open http://{host}:{port}/ (the page), http://{host}:{port}/docs (the API), or "
        f"curl -s http://{host}:{port}/search -H 'content-type: application/json' "
        "-d '{\"query\": \"loft\"}'", style="bold")
    try:
        settings = get_settings()
    except ValidationError as err:
        raise fail(f"bad server setting: {err.errors()[0]['msg']}") from None
    limits = EdgeLimits(max_body_bytes=settings.max_body_bytes,
                        max_header_bytes=settings.max_header_bytes,
                        request_timeout_s=settings.request_timeout_s, server_timeout_s=timeout)
    serve_workers(host, port, workers, limits, local_redis=state == LOCAL_REDIS)


def _check_edge(workers: int, *, local_redis: bool) -> None:
    """Fail in one line if redis-server or HAProxy is needed and missing; warn when one worker
    has to serve without HAProxy."""
    from funnel.serve.haproxy import HAProxyMissing, find_haproxy
    from funnel.serve.workers import LOCAL_REDIS, RedisMissing, find_redis

    if local_redis:
        try:
            find_redis()
            import redis  # noqa: F401  (the workers' client)
        except RedisMissing as err:
            raise fail(str(err)) from None
        except ImportError:
            raise fail(f"--state {LOCAL_REDIS} needs the redis client: pip install "
                       "'funnel[redis]'") from None
    try:
        find_haproxy()
    except HAProxyMissing as err:
        if workers > 1:
            raise fail(str(err)) from None
        if local_redis:
            raise fail(f"--state {LOCAL_REDIS} shares sessions between workers behind HAProxy, "
                       "which is not installed; with one worker pass --state memory://") from None
        warn("haproxy is not installed, so uvicorn serves the port alone: headers and bodies are "
             "limited, a client sending slowly is not timed out; run 'apt-get install haproxy' "
             "(or scripts/setup-system.sh)")
