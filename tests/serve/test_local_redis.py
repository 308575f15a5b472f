"""``funnel serve --state redis-local``: the server starts a private redis-server for the state
its workers share, supervises it and stops it last; without redis-server it fails in one line."""

from __future__ import annotations

import os
import shutil
import signal

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from funnel.cli import app

from .test_edge import Edge, edge_server, needs_haproxy, search


def test_redis_local_without_redis_server_fails_in_one_line_saying_how_to_install(
        monkeypatch, tmp_path):
    which = shutil.which
    monkeypatch.setattr("funnel.serve.workers.shutil.which",
                        lambda name, *a, **k: None if name == "redis-server" else which(name, *a,
                                                                                        **k))
    res = CliRunner().invoke(app, ["serve", "--workspace", str(tmp_path), "--workers", "2",
                                   "--state", "redis-local"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "apt-get install redis-server" in lines[0] and "--state redis://" in lines[0]


def _redis(edge: Edge) -> psutil.Process:
    return next(p for p in psutil.Process(edge.proc.pid).children()
                if p.name().startswith("redis-server"))


def _clicks_seen_by(edge: Edge, worker: psutil.Process, user: str) -> int:
    """The user's clicks in the online state as ``worker`` reads it (asked on its socket)."""
    transport = httpx.HTTPTransport(uds=edge.worker_socket(worker))
    with httpx.Client(transport=transport, base_url="http://worker", timeout=60) as direct:
        r = direct.post("/search", json={"query": "cabin", "k": 5, "user_id": user})
    assert r.status_code == 200, r.text
    return int(r.json()["state_clicks"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="redis-server not installed (scripts/setup-system.sh installs it)")
@needs_haproxy
def test_redis_local_is_shared_by_every_worker_and_stopped_with_them(served_workspace,
                                                                     tmp_path):
    with edge_server(served_workspace.root, "redis-local", cwd=tmp_path) as edge:
        redis = _redis(edge)
        assert os.getpgid(redis.pid) != os.getpgid(edge.proc.pid)  # a Ctrl-C reaches only us
        assert not [c for c in redis.net_connections("inet") if c.status == "LISTEN"]
        events = [{"user_id": "local-redis-u1", "event_type": "click", "item_id": item}
                  for item in ("i0000001", "i0000002", "i0000003")]
        assert httpx.post(edge.base + "/events", json={"events": events},
                          timeout=60).status_code == 200
        assert [_clicks_seen_by(edge, w, "local-redis-u1") for w in edge.workers()] == [3, 3]
        assert search(edge.base).status_code == 200
        edge.proc.send_signal(signal.SIGTERM)
        assert edge.proc.wait(timeout=90) == 0
        assert not redis.is_running() or redis.status() == psutil.STATUS_ZOMBIE
    assert list(tmp_path.iterdir()) == []  # no dump.rdb or appendonly file in the cwd
