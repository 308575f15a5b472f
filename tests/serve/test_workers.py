"""``funnel serve --workers N`` refuses what cannot work, each in one line: a taken port, a
per-process state, no HAProxy. (Serving through HAProxy is ``test_edge.py``.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funnel.cli import app
from funnel.serve.haproxy import EdgeLimits, render_config
from funnel.serve.workers import check_port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_taken_port_fails_in_one_line(served_workspace):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = subprocess.run(  # the port is taken before any worker reaches the state store
            [sys.executable, "-m", "funnel.cli", "serve", "--workspace",
             str(served_workspace.root), "--port", str(port), "--workers", "2",
             "--state", "redis://127.0.0.1:9/0"],
            capture_output=True, text=True, timeout=120,
        )
    if "haproxy" in out.stderr and "not installed" in out.stderr:
        pytest.skip("haproxy not installed: the port is never tried")
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_port_names_the_address():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}: "):
            check_port("127.0.0.1", port)
    check_port("127.0.0.1", free_port())  # a free port passes


def test_several_workers_with_a_per_process_state_are_refused_in_one_line(served_workspace):
    """Each worker would keep its own sessions (probe: a user's next search was personalized
    0 times in 20 with 2 workers and memory://, and only a warning said so)."""
    out = subprocess.run(
        [sys.executable, "-m", "funnel.cli", "serve", "--workspace", str(served_workspace.root),
         "--port", str(free_port()), "--workers", "2"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: --workers 2 needs a shared online state; memory:// is per worker, so a user's "
        "next request would miss their clicks: pass --state redis-local (funnel serve starts a "
        "private redis-server) or --state redis://HOST:PORT/0"]


def test_several_workers_without_haproxy_fail_in_one_line_saying_how_to_install(
        monkeypatch, tmp_path):
    monkeypatch.setattr("funnel.serve.haproxy.shutil.which", lambda *a, **k: None)
    res = CliRunner().invoke(app, ["serve", "--workspace", str(tmp_path), "--workers", "2",
                                   "--state", "redis://127.0.0.1:9/0"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "apt-get install haproxy" in lines[0] and "scripts/setup-system.sh" in lines[0]


def test_the_generated_config_holds_the_edge_rules(tmp_path: Path):
    limits = EdgeLimits(max_body_bytes=5000, server_timeout_s=2.5)
    config = render_config("127.0.0.1", 8123, [tmp_path / "w0.sock", tmp_path / "w1.sock"],
                           limits)
    for rule in ("bind 127.0.0.1:8123", "balance first", "maxconn 1", "timeout server 2500ms",
                 "timeout queue", "timeout http-request", "tune.bufsize",
                 "req.hdr(content-length) -m int gt 5000", "x-funnel-queue-ms %Tw",
                 "del-header x-funnel-peer", f"server w1 {tmp_path / 'w1.sock'}"):
        assert rule in config, rule


def _fan_out(tmp_path: Path, peer_status: int) -> tuple[int, bytes, list[bytes]]:
    """POST /admin/reload through :class:`AdminFanOut` over an app that answers 200, with one
    peer answering ``peer_status`` and one peer down; (status, body, what the peer got)."""
    import asyncio

    from funnel.serve.fanout import AdminFanOut

    async def ok_app(scope, receive, send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"version": "v2"}'})

    seen: list[bytes] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope"
                     % peer_status)
        await writer.drain()
        writer.close()

    async def run() -> tuple[int, bytes]:
        live = str(tmp_path / "w1.sock")
        server = await asyncio.start_unix_server(peer, live)
        fan = AdminFanOut(ok_app, peers=[live, str(tmp_path / "w2.sock")], timeout_s=10)
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/admin/reload", "query_string": b"",
                 "headers": [(b"authorization", b"Bearer tok")]}
        async with server:
            await fan(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    status, body = asyncio.run(run())
    return status, body, seen


def test_an_admin_request_is_repeated_to_every_live_peer_with_its_token(tmp_path: Path):
    status, body, seen = _fan_out(tmp_path, 200)
    assert status == 200 and body == b'{"version": "v2"}'  # the down peer loads at its start
    [request] = seen
    assert request.startswith(b"POST /admin/reload HTTP/1.1\r\n")
    assert b"authorization: Bearer tok" in request and b"x-funnel-peer: 1" in request


def test_a_peer_that_fails_the_admin_request_is_what_the_client_sees(tmp_path: Path):
    status, body, _ = _fan_out(tmp_path, 503)
    assert status == 503
    detail = json.loads(body)["detail"]
    assert detail.startswith("reloaded here, but not on every worker: w1.sock: 503")
