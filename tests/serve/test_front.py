"""The front of ``funnel serve --workers N``: each request goes to a free worker, HTTP framing is
kept, limits answer in JSON, broadcasts reach every worker. Workers here are small ASGI apps
under uvicorn on unix sockets, in threads; ``test_workers.py`` runs the real processes."""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funnel.serve.front import Front, Limits, error_response
from funnel.serve.worker_metrics import merge_worker_metrics


class FakeWorker:
    """An ASGI app that blocks its loop like a CPU-bound worker (``/sleep?ms=``, and
    ``/admin/slow?ms=`` for a slow broadcast), echoes (``/echo``), counts admin calls and
    serves a metrics text."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[str] = []
        self.admin_calls = 0

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.requests.append(path)
        query = parse_qs(scope["query_string"].decode())
        status, content_type = 200, b"application/json"
        if path in ("/sleep", "/admin/slow"):  # the front broadcasts the second to every worker
            time.sleep(float(query.get("ms", ["0"])[0]) / 1000.0)  # blocks, as a search does
            out = json.dumps({"worker": self.name}).encode()
        elif path == "/echo":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            out = json.dumps({"worker": self.name, "body": body.decode("latin-1"),
                              "headers": headers, "method": scope["method"]}).encode()
        elif path == "/admin/reload":
            self.admin_calls += 1
            status = 200 if self.name != "broken" else 503
            out = json.dumps({"worker": self.name}).encode()
        elif path == "/metrics":
            content_type = b"text/plain"
            out = (f"# HELP calls Calls\n# TYPE calls counter\n"
                   f"calls{{route=\"/x\"}} {len(self.requests)}\n").encode()
        else:
            status, out = 404, b'{"detail":"not found"}'
        headers = [(b"content-type", content_type)]
        if path != "/echo":  # /echo streams (chunked), as an app may; the others set a length
            headers.append((b"content-length", str(len(out)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": out})


class Running:
    """Fake workers on unix sockets and a front on a TCP port, each loop in its own thread."""

    def __init__(self, tmp: Path, names: list[str], limits: Limits | None = None) -> None:
        self.workers = [FakeWorker(n) for n in names]
        self.sockets = [tmp / f"w{i}.sock" for i in range(len(names))]
        self.servers: list[uvicorn.Server] = []
        self.threads: list[threading.Thread] = []
        self.front = Front(self.sockets, limits or Limits())
        self.clients: list[http.client.HTTPConnection] = []
        self.loop = asyncio.new_event_loop()
        self.front_thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.front_thread.start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.call(self.front.start("127.0.0.1", self.port))

    def call(self, coro):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start_worker(self, i: int) -> None:
        config = uvicorn.Config(self.workers[i], uds=str(self.sockets[i]), log_level="warning",
                                timeout_keep_alive=3600, lifespan="on")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        self.servers.append(server)
        self.threads.append(thread)

    def wait_ready(self, n: int) -> None:
        deadline = time.monotonic() + 20
        while self.front.ready_workers < n:
            assert time.monotonic() < deadline, "the front did not connect to the workers"
            time.sleep(0.05)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.call(self.front.close(grace_s=5))
        for server in self.servers:
            server.should_exit = True
        for thread in self.threads:
            thread.join(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.front_thread.join(timeout=10)
        self.loop.close()

    def conn(self) -> http.client.HTTPConnection:
        client = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        self.clients.append(client)
        return client


def get(conn: http.client.HTTPConnection, path: str, **kw) -> tuple[int, dict]:  # noqa: ANN003
    conn.request(kw.pop("method", "GET"), path, **kw)
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, json.loads(body) if body else {}


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Running]:
    running = Running(tmp_path, ["a", "b"])
    running.start_worker(0)
    running.start_worker(1)
    running.wait_ready(2)
    yield running
    running.close()


def test_a_request_never_waits_behind_a_busy_worker_while_another_is_free(two: Running):
    slow_done = threading.Event()
    slow_answer: list[str] = []

    def slow() -> None:
        slow_answer.append(get(two.conn(), "/sleep?ms=3000")[1]["worker"])
        slow_done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 10
    while not any(w.requests for w in two.workers):  # the slow one has reached a worker
        assert time.monotonic() < deadline
        time.sleep(0.01)
    busy = next(w.name for w in two.workers if w.requests)
    conns = [two.conn() for _ in range(6)]  # keep-alive connections, as a client pool opens
    answered = [get(c, "/sleep?ms=1")[1]["worker"] for _ in range(5) for c in conns]
    assert not slow_done.is_set(), "the quick requests should finish while the slow one runs"
    assert answered == [next(w.name for w in two.workers if w.name != busy)] * 30
    thread.join()
    assert slow_answer == [busy]


def test_requests_wait_in_the_front_when_every_worker_is_busy(two: Running):
    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = get(two.conn(), "/sleep?ms=400")[1]["worker"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(5))
    counts = [w.requests.count("/sleep") for w in two.workers]
    assert sum(counts) == 5 and min(counts) >= 2, counts  # three had to wait for a free one
    status, _ = get(two.conn(), "/health-of-nothing")
    assert status == 404  # a worker's own answers pass through
    text = merge_text(two)
    assert "funnel_front_queued_total 3" in text


def merge_text(running: Running) -> str:
    conn = running.conn()
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    assert resp.status == 200
    return resp.read().decode()


def test_metrics_merge_every_worker_with_a_worker_label_and_admin_reaches_all(two: Running):
    conn = two.conn()
    for _ in range(3):
        get(conn, "/sleep?ms=0")
    status, body = get(conn, "/admin/reload", method="POST", body=b"{}")
    assert status == 200 and body["worker"] in ("a", "b")
    assert [w.admin_calls for w in two.workers] == [1, 1]
    text = merge_text(two)
    assert text.count("# TYPE calls counter") == 1
    assert 'calls{worker="0",route="/x"}' in text and 'calls{worker="1",route="/x"}' in text
    assert "funnel_front_workers_ready 2" in text
    assert "funnel_front_wait_ms_count" in text


def test_a_garbage_collection_during_a_broadcast_does_not_lose_its_answer(two: Running):
    # asyncio holds tasks (and a stream's reader) only weakly: a broadcast task nobody kept
    # was collected mid-flight, and its client timed out (a CI failure, once in ~20 runs).
    answer: list[int] = []
    thread = threading.Thread(
        target=lambda: answer.append(get(two.conn(), "/admin/slow?ms=600", method="POST",
                                         body=b"{}")[0]))
    thread.start()
    deadline = time.monotonic() + 10
    while not all("/admin/slow" in w.requests for w in two.workers):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(3):
        two.call(_collect())
    thread.join(timeout=30)
    assert answer == [200]
    # read on the front's loop, after the done callbacks the finished task has queued there
    assert two.call(_broadcasts_in_flight(two.front)) == 0  # done tasks are let go


async def _collect() -> None:
    gc.collect()


async def _broadcasts_in_flight(front: Front) -> int:
    return len(front.broadcasts)


def test_an_admin_failure_on_any_worker_is_what_the_client_sees(tmp_path: Path):
    running = Running(tmp_path, ["a", "broken"])
    try:
        running.start_worker(0)
        running.start_worker(1)
        running.wait_ready(2)
        status, body = get(running.conn(), "/admin/reload", method="POST", body=b"")
        assert (status, body) == (503, {"worker": "broken"})
    finally:
        running.close()


def test_no_ready_worker_is_a_503_with_a_reason_then_a_late_worker_serves(tmp_path: Path):
    running = Running(tmp_path, ["a"])
    try:
        status, body = get(running.conn(), "/sleep?ms=0")
        assert status == 503 and "no server worker is ready" in body["detail"]
        running.start_worker(0)
        running.wait_ready(1)
        assert get(running.conn(), "/sleep?ms=0") == (200, {"worker": "a"})
    finally:
        running.close()


def raw_exchange(port: int, data: bytes, until: bytes = b"", timeout: float = 10) -> bytes:
    """Send raw bytes, read until the peer closes or ``until`` has been seen."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while not (until and until in out):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out, body = out + rest[:n], rest[n + 2:]


def test_chunked_bodies_are_forwarded_whole_with_a_length(two: Running):
    data = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    out = raw_exchange(two.port, data)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()  # a streamed answer is relayed as is
    echoed = json.loads(dechunk(body))
    assert echoed["body"] == "hello world"
    assert echoed["headers"]["content-length"] == "11"
    assert "transfer-encoding" not in echoed["headers"]
    assert "connection" not in echoed["headers"]


def test_pipelined_requests_are_answered_in_order_on_one_connection(two: Running):
    data = b"".join(
        f"GET /sleep?ms={ms} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for ms in (300, 0, 0))
    data += b"GET /sleep?ms=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw_exchange(two.port, data)
    assert out.count(b"HTTP/1.1 200") == 4
    # one connection, one request at a time: the quick ones came after the slow one
    assert sum(len(w.requests) for w in two.workers) == 4


def test_expect_100_continue_is_answered_by_the_front(two: Running):
    with socket.create_connection(("127.0.0.1", two.port), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hi")
        out = b""
        while b'"hi"' not in out:
            out += s.recv(65536)
    assert out.startswith(b"HTTP/1.1 200")


def test_head_gets_headers_only_and_the_connection_stays_usable(two: Running):
    conn = two.conn()
    conn.request("HEAD", "/sleep?ms=0")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b""
    assert get(conn, "/sleep?ms=0")[0] == 200


@pytest.mark.parametrize(
    ("data", "status", "detail"),
    [
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413,
         "request body larger than 1024 bytes"),
        (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
         "URL longer than 2048 bytes"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", 431,
         "request headers larger than 4096 bytes"),
        (b"NOT A REQUEST\r\n\r\n", 400, "malformed HTTP request"),
    ],
)
def test_bad_requests_get_a_json_error_and_the_connection_closes(
        tmp_path: Path, data: bytes, status: int, detail: str):
    limits = Limits(max_body_bytes=1024, max_url_bytes=2048, max_header_bytes=4096)
    running = Running(tmp_path, ["a"], limits)
    try:
        running.start_worker(0)
        running.wait_ready(1)
        out = raw_exchange(running.port, data)
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status}".encode()), head
        assert b"connection: close" in head
        assert detail in json.loads(body)["detail"]
        assert running.workers[0].requests == []  # nothing reached the worker
    finally:
        running.close()


def test_a_body_over_the_limit_without_a_length_is_cut_off_too(tmp_path: Path):
    running = Running(tmp_path, ["a"], Limits(max_body_bytes=1024))
    try:
        running.start_worker(0)
        running.wait_ready(1)
        chunk = b"800\r\n" + b"x" * 0x800 + b"\r\n"
        out = raw_exchange(running.port, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n" + chunk)
        assert out.startswith(b"HTTP/1.1 413")
        assert running.workers[0].requests == []
    finally:
        running.close()


def test_http_1_0_and_connection_close_clients_are_closed_after_the_answer(two: Running):
    for request in (b"GET /sleep?ms=0 HTTP/1.0\r\n\r\n",
                    b"GET /sleep?ms=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        out = raw_exchange(two.port, request)  # returns only once the front closes
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"}")


def test_a_worker_that_dies_mid_request_fails_only_that_request_with_a_502(tmp_path: Path):
    path = tmp_path / "crash.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)

    def crash_on_request() -> None:  # a worker that dies while running each request
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=crash_on_request, daemon=True).start()
    front = Front([path])
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        asyncio.run_coroutine_threadsafe(front.start("127.0.0.1", port), loop).result(10)
        deadline = time.monotonic() + 10
        while front.ready_workers < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        status, body = get(client, "/x")
        client.close()
        assert status == 502 and "exited" in body["detail"]
    finally:
        asyncio.run_coroutine_threadsafe(front.close(grace_s=1), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        listener.close()


def test_a_client_that_leaves_while_queued_costs_no_worker_time(two: Running):
    blockers = [threading.Thread(target=get, args=(two.conn(), "/sleep?ms=800"))
                for _ in range(2)]
    for t in blockers:
        t.start()
    deadline = time.monotonic() + 10
    while sum(len(w.requests) for w in two.workers) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with socket.create_connection(("127.0.0.1", two.port)) as s:
        s.sendall(b"GET /sleep?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)  # queued in the front: both workers are busy
    waiter = two.conn()  # queued too, and it stays for its answer
    waiter.request("GET", "/sleep?ms=0")
    resp = waiter.getresponse()
    assert resp.status == 200 and resp.read()
    for t in blockers:
        t.join()
    time.sleep(0.2)
    assert sum(len(w.requests) for w in two.workers) == 3  # the blockers and the one that stayed
    assert float(resp.getheader("x-funnel-queue-ms")) > 100.0  # it waited for a blocker


_header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                       max_size=40)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=3000), value=_header_text)
def test_bodies_and_headers_reach_the_worker_unchanged(two: Running, body: bytes, value: str):
    conn = two.conn()
    status, echoed = get(conn, "/echo", method="POST", body=body, headers={"x-thing": value})
    assert status == 200
    assert echoed["body"].encode("latin-1") == body
    assert echoed["headers"]["x-thing"] == value
    assert echoed["headers"]["content-length"] == str(len(body))


def test_error_response_is_valid_http_with_a_json_body():
    raw = error_response(503, 'busy "now"', close=True)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 503 Service Unavailable"
    assert f"content-length: {len(body)}".encode() in head
    assert json.loads(body) == {"detail": 'busy "now"'}


def test_merge_worker_metrics_by_hand():
    a = '# HELP req Requests\n# TYPE req counter\nreq{route="/s"} 2\nreq 1\n'
    b = '# HELP req Requests\n# TYPE req counter\nreq{route="/s"} 5\n# TYPE up gauge\nup 1\n'
    assert merge_worker_metrics([("0", a), ("1", b)], "own 1\n") == (
        '# HELP req Requests\n# TYPE req counter\n'
        'req{worker="0",route="/s"} 2\nreq{worker="0"} 1\nreq{worker="1",route="/s"} 5\n'
        '# TYPE up gauge\nup{worker="1"} 1\n'
        "own 1\n"
    )


def test_an_upgrade_request_is_served_as_plain_http_then_closed(two: Running):
    out = raw_exchange(two.port, b"GET /sleep?ms=0 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                                 b"Upgrade: h2c\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"}")  # answered, then closed
    assert two.workers[0].requests + two.workers[1].requests == ["/sleep"]


def test_a_request_trickling_in_past_its_deadline_gets_a_408(tmp_path: Path):
    running = Running(tmp_path, ["a"], Limits(request_timeout_s=0.5))
    try:
        running.start_worker(0)
        running.wait_ready(1)
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head
        assert "did not arrive within 0.5 s" in json.loads(body)["detail"]
        assert running.workers[0].requests == []
    finally:
        running.close()
