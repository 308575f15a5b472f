"""``funnel serve`` with one worker (the default) runs behind HAProxy too, probed as issue 19 did:
a chunked body over the limit, a header over the limit, a client sending its request slowly, a
stopped worker; and every answer the edge makes itself is the app's JSON error shape."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from .test_edge import TOKEN, Edge, edge_server, needs_haproxy, search

pytestmark = [pytest.mark.slow, needs_haproxy]

REQUEST_TIMEOUT_S = 2.0
MAX_BODY = 1_000_000


@pytest.fixture(scope="module")
def one(served_workspace) -> Iterator[Edge]:
    env = {"FUNNEL_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT_S)}
    with edge_server(served_workspace.root, "memory://", workers=1, env=env) as running:
        yield running


def _rss_mb(edge: Edge) -> float:
    return sum(p.memory_info().rss for p in [edge.proxy(), *edge.workers()]) / 2**20


def _detail(response: httpx.Response | bytes) -> str:
    """The ``detail`` of a JSON error (a whole response, or the raw bytes of one)."""
    if isinstance(response, httpx.Response):
        assert response.headers["content-type"] == "application/json"
        body = response.json()
    else:
        head, _, raw = response.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower(), head
        body = json.loads(raw)
    assert set(body) == {"detail"}, body
    assert "/tmp" not in body["detail"] and "/home" not in body["detail"]
    return str(body["detail"])


def test_one_worker_is_served_through_haproxy(one: Edge):
    assert len(one.workers()) == 1 and one.proxy().name() == "haproxy"
    r = search(one.base)
    assert r.status_code == 200 and float(r.headers["x-funnel-queue-ms"]) >= 0


def test_a_chunked_body_over_the_limit_is_refused_without_growing_the_server(one: Edge):
    """Issue 19 probe: a chunked 52 MB body was read whole (+118 MB RSS, not given back). Now
    the worker answers 413 at the limit and discards the rest as it arrives."""
    before = _rss_mb(one)
    with socket.create_connection(("127.0.0.1", one.port)) as conn:
        conn.settimeout(30)
        conn.sendall(b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        chunk = b" " * 65_536
        for _ in range(800):  # 52 MB, without a Content-Length
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.sendall(b"0\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            data = conn.recv(65_536)
            assert data, answer
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert _detail(answer) == f"request body larger than {MAX_BODY} bytes"
    assert _rss_mb(one) - before < 20
    assert search(one.base).status_code == 200


def test_a_body_over_the_limit_by_its_length_is_refused_at_the_edge(one: Edge):
    r = httpx.post(one.base + "/events", content=b"[" + b" " * MAX_BODY + b"]",
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413
    assert _detail(r) == f"request body larger than {MAX_BODY} bytes"
    assert "x-funnel-time-ms" not in r.headers  # HAProxy answered, no worker saw it


def test_a_header_over_the_limit_gets_a_431(one: Edge):
    """Issue 19 probe: a 1 MB header was answered 200."""
    r = httpx.get(one.base + "/health", headers={"x-big": "a" * 20_000}, timeout=30)
    assert r.status_code == 431
    assert _detail(r) == "request headers larger than 16384 bytes"
    assert httpx.get(one.base + "/health", headers={"x-ok": "a" * 8_000}).status_code == 200


def test_a_header_larger_than_the_proxy_buffer_is_refused(one: Edge):
    """Past HAProxy's buffer (32 KiB) the request cannot be parsed: HAProxy 2.6's connection
    layer answers its own 400 page (it ignores http-error there: haproxy issue #3032)."""
    r = httpx.get(one.base + "/health", headers={"x-big": "a" * 1_000_000}, timeout=30)
    assert r.status_code == 400
    assert search(one.base).status_code == 200


def _closed_after(conn: socket.socket, payload: bytes, every_s: float, limit_s: float
                  ) -> tuple[float, bytes]:
    """Send ``payload`` a byte each ``every_s`` until the server answers or closes; (seconds
    it took, what it sent)."""
    conn.settimeout(every_s)
    t0 = time.monotonic()
    for i in range(len(payload)):
        assert time.monotonic() - t0 < limit_s, "still open"
        try:
            conn.sendall(payload[i:i + 1])
            data = conn.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - t0, b""
        return time.monotonic() - t0, data
    raise AssertionError("the whole request was sent")


def test_a_client_sending_its_headers_slowly_is_closed_in_time(one: Edge):
    """Issue 19 probe: slowloris connections (headers at 1 byte/s) were never closed."""
    head = b"GET /health HTTP/1.1\r\nhost: x\r\n" + b"x-slow: y\r\n" * 50
    with socket.create_connection(("127.0.0.1", one.port)) as conn:
        took, answer = _closed_after(conn, head, 1.0, REQUEST_TIMEOUT_S + 5)
    assert REQUEST_TIMEOUT_S - 0.5 <= took <= REQUEST_TIMEOUT_S + 2
    assert answer.startswith(b"HTTP/1.1 408") or answer == b""


def test_a_client_sending_its_body_slowly_gets_a_json_408(one: Edge):
    with socket.create_connection(("127.0.0.1", one.port)) as conn:
        conn.sendall(b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 100\r\n\r\n")
        took, answer = _closed_after(conn, b'{"events": []}', 1.0, REQUEST_TIMEOUT_S + 5)
    assert took <= REQUEST_TIMEOUT_S + 2
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert _detail(answer) == f"the request did not arrive within {REQUEST_TIMEOUT_S:g} s"


def test_a_stopped_worker_gets_json_errors_from_the_edge_not_a_hang(one: Edge):
    worker = one.workers()[0]
    worker.suspend()
    try:
        t0 = time.monotonic()
        first = httpx.get(one.base + "/health", timeout=60)
        assert time.monotonic() - t0 < 4 * 3.0 + 2  # a server timeout per try, then it gives up
        assert first.status_code in (503, 504)
        assert "retry" in _detail(first)
        deadline = time.monotonic() + 15  # the health checks take it out: answered at once
        while (r := httpx.get(one.base + "/health", timeout=60)).status_code != 503:
            assert time.monotonic() < deadline, r.status_code
        assert _detail(r).startswith("no server worker was free in time")
    finally:
        worker.resume()
    deadline = time.monotonic() + 15
    while httpx.get(one.base + "/health", timeout=60).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.3)


def test_a_reload_does_not_hold_the_searches_of_a_single_worker(one: Edge, served_workspace):
    """``/admin/*`` takes no place in the worker's one slot: searches keep being answered
    while it reloads (with one slot, each would wait in HAProxy's queue for the reload)."""
    from funnel.cli.build import run_build

    run_build(served_workspace, ("catalog",))
    token = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=120) as admin, httpx.Client(timeout=60) as client:
        pending = admin.build_request("POST", one.base + "/admin/reload", headers=token)
        answer: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: answer.append(admin.send(pending)))
        thread.start()
        answered_during = 0
        while thread.is_alive():
            r = search(one.base, client)
            assert r.status_code == 200, r.text
            answered_during += thread.is_alive()
        thread.join()
    assert answer[0].status_code == 200, answer[0].text
    assert answered_during >= 1
    assert psutil.Process(one.proc.pid).is_running()
