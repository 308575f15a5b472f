"""Without HAProxy installed, one worker is uvicorn alone on the port, with the limits uvicorn
has (h11's header limit; httptools has none) and a one-line warning of the one it lacks."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from funnel.cli import app

from .test_edge import free_port


def test_one_worker_without_haproxy_warns_in_one_line_and_serves(monkeypatch,
                                                                 served_workspace):
    which = shutil.which
    monkeypatch.setattr("funnel.serve.haproxy.shutil.which",
                        lambda name, *a, **k: None if name == "haproxy" else which(name, *a, **k))
    served: list[tuple] = []
    monkeypatch.setattr("funnel.serve.workers.serve_workers", lambda *a, **k: served.append(a))
    res = CliRunner().invoke(app, ["serve", "--workspace", str(served_workspace.root)])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    assert warnings == ["warning: haproxy is not installed, so uvicorn serves the port alone: "
                        "headers and bodies are limited, a client sending slowly is not timed "
                        "out; run 'apt-get install haproxy' (or scripts/setup-system.sh)"]
    assert served and served[0][2] == 1


@pytest.fixture(scope="module")
def alone(served_workspace) -> Iterator[str]:
    port = free_port()
    code = ("from funnel.serve.haproxy import EdgeLimits; from funnel.serve.workers import "
            f"serve_alone; serve_alone('127.0.0.1', {port}, EdgeLimits())")
    proc = subprocess.Popen([sys.executable, "-c", code],
                            env=dict(os.environ, FUNNEL_WORKSPACE=str(served_workspace.root)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, "uvicorn exited while starting"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "uvicorn did not answer /health"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.slow
def test_uvicorn_alone_refuses_a_header_over_the_limit(alone: str):
    """Issue 19 probe: a 1 MB header was answered 200 (uvicorn's httptools parser). h11 limits
    what it buffers of unfinished headers, so headers that arrive whole in one read (uvicorn
    reads 64 KiB) pass: the limit is 16 to 64 KiB."""
    for size in (200_000, 1_000_000):
        with contextlib.suppress(httpx.TransportError):  # a 400, or the connection closed
            r = httpx.get(alone + "/health", headers={"x-big": "a" * size}, timeout=30)
            assert r.status_code == 400, size
    assert httpx.get(alone + "/health", headers={"x-ok": "a" * 8_000}).status_code == 200


@pytest.mark.slow
def test_uvicorn_alone_refuses_a_chunked_body_over_the_limit(alone: str):
    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 2.6 MB, without a Content-Length
            yield b" " * 65_536

    r = httpx.post(alone + "/events", content=chunks(),
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413
    assert r.json() == {"detail": "request body larger than 1000000 bytes"}
