"""``funnel serve --workers 2``: two worker processes behind the front; a killed worker costs
no request it was not running and is replaced, a reload reaches both, SIGTERM stops them all."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest


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


def _workers(parent: psutil.Process) -> list[psutil.Process]:
    """The worker processes (spawned children; the resource tracker is not one)."""
    out = []
    for p in parent.children():
        try:
            if "spawn_main" in " ".join(p.cmdline()):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return out


def _ready_workers(base: str) -> int:
    text = httpx.get(base + "/metrics", timeout=30).text
    line = next(ln for ln in text.splitlines() if ln.startswith("funnel_front_workers_ready "))
    return int(line.split()[1])


def _wait_workers(base: str, n: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while _ready_workers(base) != n:
        assert time.monotonic() < deadline, f"{n} workers never became ready"
        time.sleep(0.3)


@pytest.mark.slow
def test_two_workers_behind_the_front_survive_a_crash_and_reload_together(served_workspace,
                                                                         redis_url):
    port = free_port()
    env = dict(os.environ, FUNNEL_ADMIN_TOKEN="t0ps3cret-token-7d2e")
    server = subprocess.Popen(
        [sys.executable, "-m", "funnel.cli", "serve", "--workspace", str(served_workspace.root),
         "--port", str(port), "--workers", "2", "--state", redis_url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        _wait_workers(base, 2)
        parent = psutil.Process(server.pid)
        workers = _workers(parent)
        assert len(workers) == 2
        victim = workers[0]
        victim.kill()
        victim.wait(timeout=30)
        # nothing was running on it: every request goes to the survivor, none is reset
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(30):
            conn.request("POST", "/search", body=b'{"query": "cabin", "k": 5}',
                         headers={"content-type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            assert len(json.loads(resp.read())["items"]) == 5
        conn.close()
        _wait_workers(base, 2)  # a new worker replaced the dead one
        assert victim.pid not in {p.pid for p in _workers(parent)}

        reload = httpx.post(base + "/admin/reload", timeout=120,
                            headers={"authorization": "Bearer t0ps3cret-token-7d2e"})
        assert reload.status_code == 200, reload.text
        metrics = httpx.get(base + "/metrics", timeout=30).text
        for worker in ("0", "1"):  # the reload reached both workers
            assert any(ln.startswith(f'funnel_requests_total{{worker="{worker}",')
                       and 'route="/admin/reload"' in ln for ln in metrics.splitlines())
        assert httpx.post(base + "/admin/reload").status_code == 401

        children = parent.children(recursive=True)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"workers left running: {alive}"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)


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
    assert out.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


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
        "next request would miss their clicks: pass --state redis://127.0.0.1:6379/0 (start one "
        "with 'redis-server --port 6379')"]
