"""``funnel serve``: the FastAPI app under uvicorn; with ``--workers N`` behind HAProxy."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from funnel.cli._app import WorkspaceOpt, app, console, fail, say, user_errors
from funnel.workspace import DEFAULT_WORKSPACE, Workspace


@app.command()
def serve(
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes; with > 1 HAProxy (apt-get install haproxy) hands each "
            "request to a free worker, and --state must be redis:// so they share sessions.",
            min=1,
        ),
    ] = 1,
    timeout: Annotated[
        float,
        typer.Option(help="With --workers > 1: seconds a worker may take to start answering "
                     "before HAProxy gives up (a search is retried once on another worker).",
                     min=0.1),
    ] = 30.0,
    state: Annotated[
        str, typer.Option(help="Online state store: memory:// or redis://host:port/db.")
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

    from funnel.serve.haproxy import EdgeLimits, HAProxyMissing, find_haproxy
    from funnel.serve.settings import get_settings
    from funnel.serve.workers import serve_workers

    if workers > 1 and state.startswith("memory"):
        # each worker would keep its own sessions: measured, a user's next search was
        # personalized 0 times in 20 with 2 workers, and only a warning said so
        raise fail(f"--workers {workers} needs a shared online state; memory:// is per worker, "
                   "so a user's next request would miss their clicks: pass --state "
                   "redis://127.0.0.1:6379/0 (start one with 'redis-server --port 6379')")
    if workers > 1:
        try:
            find_haproxy()
        except HAProxyMissing as err:
            raise fail(str(err)) from None
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
        max_body = get_settings().max_body_bytes
    except ValidationError as err:
        raise fail(f"bad server setting: {err.errors()[0]['msg']}") from None
    limits = EdgeLimits(max_body_bytes=max_body, server_timeout_s=timeout)
    serve_workers(host, port, workers, limits)
