"""``funnel serve --workers 2``: one listening socket per process, connections spread by the
kernel, a killed worker replaced, SIGTERM stops them all."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from funnel.serve.workers import listening_socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited while starting"
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server did not answer /health")


def _listening(parent: psutil.Process, port: int) -> list[psutil.Process]:
    """The worker processes: children with a listening socket of their own on ``port``."""
    out = []
    for p in parent.children():
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in p.net_connections()):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return out


def _established(proc: psutil.Process, port: int) -> int:
    return sum(1 for c in proc.net_connections()
               if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


@pytest.mark.slow
def test_two_workers_share_connections_and_restart(served_workspace):
    port = free_port()
    env = dict(os.environ, FUNNEL_STATE_URL="memory://")
    server = subprocess.Popen(
        [sys.executable, "-m", "funnel.cli", "serve", "--workspace", str(served_workspace.root),
         "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        parent = psutil.Process(server.pid)
        deadline = time.monotonic() + 180  # the second worker may still be loading
        conns: list[http.client.HTTPConnection] = []
        while time.monotonic() < deadline:
            for c in conns:
                c.close()
            conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(24)]
            for c in conns:  # keep-alive connections, opened in a burst as a pool would
                c.request("GET", "/health")
                assert c.getresponse().read()
            workers = [p for p in parent.children() if _established(p, port)]
            if len(workers) == 2:
                break
            time.sleep(1)
        counts = sorted(_established(p, port) for p in parent.children())
        # a hash of the addresses picks the socket: 24 connections do not all land on one
        assert len(counts) >= 2 and counts[-2] >= 4 and sum(counts) == 24, counts
        for c in conns:
            c.close()

        victim = _listening(parent, port)[0]
        victim.kill()
        # connections queued on the dying worker's socket are reset (the one cost of a socket
        # per process); the survivor keeps answering and a new worker replaces the dead one
        deadline = time.monotonic() + 180
        replaced: list[psutil.Process] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(base + "/health", timeout=30)
            replaced = [p for p in _listening(parent, port) if p.pid != victim.pid]
            if len(replaced) == 2:
                break
            time.sleep(0.5)
        assert len(replaced) == 2
        time.sleep(1)
        with httpx.Client(base_url=base, timeout=60) as client:
            for _ in range(20):  # new connections, spread over both sockets
                assert client.get("/health", headers={"connection": "close"}).status_code == 200

        children = parent.children(recursive=True)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"workers left running: {alive}"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)


def test_listening_socket_can_be_bound_twice_but_a_taken_port_fails_clearly():
    port = free_port()
    first, second = listening_socket("127.0.0.1", port), listening_socket("127.0.0.1", port)
    first.close()
    second.close()
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(1)
    try:
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", plain.getsockname()[1])
    finally:
        plain.close()
