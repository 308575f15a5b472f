"""``funnel serve --workers 2``: HAProxy in front of two uvicorn workers, probed as issue 19 did.

Each probe of the issue is a test here (loopback only, bounded loops): a client that never reads
its responses, ``kill -9`` of a worker under load, a SIGSTOPped worker, SIGTERM while requests
run, header and body limits; plus reload reaching every worker and ``/metrics`` summing them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy", path=os.environ.get("PATH", "") + ":/usr/sbin") is None,
    reason="haproxy not installed (scripts/setup-system.sh installs it from Debian packages)")
pytestmark = [pytest.mark.slow, needs_haproxy]

TOKEN = "edge-admin-5c7e-11d4"
SERVER_TIMEOUT_S = 3.0
SEARCH = json.dumps({"query": "cabin", "k": 5}).encode()
JSON = {"content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Edge:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[psutil.Process]:
        """The uvicorn workers in socket order (children of the supervisor, beside HAProxy)."""
        out = []
        for p in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                if "uvicorn" in " ".join(p.cmdline()):
                    out.append((self.worker_socket(p), p))
        return [p for _, p in sorted(out, key=lambda sp: sp[0])]

    def proxy(self) -> psutil.Process:
        return next(p for p in psutil.Process(self.proc.pid).children()
                    if "haproxy" in p.name())

    def worker_socket(self, worker: psutil.Process) -> str:
        argv = worker.cmdline()
        return argv[argv.index("--uds") + 1]

    def metric(self, name: str) -> float:
        text = httpx.get(self.base + "/metrics", timeout=30).text
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                   if ln.startswith(name + " ") or ln.startswith(name + "{"))

    def wait_workers_up(self, n: int, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(httpx.HTTPError, StopIteration):
                if self.metric("funnel_workers_up") == n and len(self.workers()) == n:
                    return
            assert time.monotonic() < deadline, f"{n} workers never came up"
            time.sleep(0.3)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=30)


@contextlib.contextmanager
def edge_server(workspace: Path, state: str, *, workers: int = 2,
                env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[Edge]:
    """``funnel serve`` with ``workers`` behind HAProxy, up and every worker answering."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "funnel.cli", "serve", "--workspace", str(workspace),
         "--port", str(port), "--workers", str(workers), "--state", state,
         "--timeout", str(SERVER_TIMEOUT_S)],
        env=dict(os.environ, FUNNEL_ADMIN_TOKEN=TOKEN, **(env or {})), cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    edge = Edge(proc, port)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, "the server exited while starting"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(edge.base + "/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server did not answer /health"
            time.sleep(0.3)
        edge.wait_workers_up(workers)
        yield edge
    finally:
        children = []
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(proc.pid).children(recursive=True)
        edge.stop()
        _, alive = psutil.wait_procs(children, timeout=30)
        for p in alive:
            p.kill()


@pytest.fixture(scope="module")
def edge(served_workspace, redis_url) -> Iterator[Edge]:
    with edge_server(served_workspace.root, redis_url) as running:
        yield running


def search(base: str, client: httpx.Client | None = None) -> httpx.Response:
    return (client or httpx).post(base + "/search", content=SEARCH, headers=JSON, timeout=60)


def _post_events(base: str, user: str, acked: list[str], stop: threading.Event,
                 errors: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=60) as c:
        while not stop.is_set():
            ids = [f"edge-{uuid.uuid4().hex}" for _ in range(5)]
            events = [{"event_id": i, "user_id": user, "event_type": "click",
                       "item_id": "i0000001"} for i in ids]
            try:
                r = c.post("/events", json={"events": events})
            except httpx.HTTPError as err:  # the worker died with it: not acknowledged
                errors.append(type(err).__name__)
                continue
            if r.status_code == 200:
                acked.extend(ids)
            else:
                errors.append(str(r.status_code))


def test_kill_9_of_a_worker_under_load_loses_no_acknowledged_event(served_workspace,
                                                                  redis_url):
    """Issue 19 probe: a worker killed with ``kill -9`` stranded 50 of 100 acknowledged events
    in its ``.open`` spool segment. The worker is restarted, searches are retried on the other
    worker, and every acknowledged event reaches the store."""
    from funnel.data.store import EventStore
    from funnel.serve.spool import EventSpool

    with edge_server(served_workspace.root, redis_url) as edge:
        stop = threading.Event()
        acked: list[str] = []
        errors: list[str] = []
        search_statuses: list[int] = []

        def searches() -> None:
            with httpx.Client() as c:
                while not stop.is_set():
                    try:
                        search_statuses.append(search(edge.base, c).status_code)
                    except httpx.HTTPError as err:
                        search_statuses.append(-1)
                        errors.append(f"search: {err!r}")

        threads = [threading.Thread(target=_post_events, args=(edge.base, f"k9u{i}", acked,
                                                               stop, errors))
                   for i in range(3)] + [threading.Thread(target=searches) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        victim = edge.workers()[0]
        victim.kill()
        victim.wait(timeout=30)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        edge.wait_workers_up(2)  # replaced
        assert victim.pid not in {p.pid for p in edge.workers()}
        assert len(acked) > 50
        # requests the dying worker had taken may fail (a search, or an /events post that was
        # therefore not acknowledged and is not counted below): once a response has started,
        # or a POST was sent, HAProxy cannot retry it. Seen: 1 or 2; bounded by the 5 threads.
        assert set(search_statuses) <= {200, -1}, sorted(set(search_statuses))
        assert len(errors) <= 5, errors
        assert edge.stop() == 0
    EventSpool(served_workspace.root / "spool").flush_to_store(served_workspace)  # next start
    with EventStore.open(served_workspace.store_path, read_only=True) as store:
        stored = {row[0] for row in store.con.execute(
            "SELECT event_id FROM events WHERE event_id LIKE 'edge-%'").fetchall()}
    lost = set(acked) - stored
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged events lost"


def test_searches_go_through_the_proxy_with_the_queue_time(edge: Edge):
    with httpx.Client() as client:
        for _ in range(10):
            r = search(edge.base, client)
            assert r.status_code == 200, r.text
            assert len(r.json()["items"]) == 5
            assert float(r.headers["x-funnel-queue-ms"]) >= 0  # HAProxy's %Tw
            assert "x-funnel-time-ms" in r.headers  # the worker's own time


def test_a_header_over_the_limit_is_refused(edge: Edge):
    r = httpx.get(edge.base + "/health", headers={"x-big": "a" * 20_000}, timeout=30)
    assert r.status_code == 431
    assert r.json() == {"detail": "request headers larger than 16384 bytes"}
    r = httpx.get(edge.base + "/health", headers={"x-big": "a" * 64_000}, timeout=30)
    assert r.status_code == 400  # past HAProxy's buffer: unparsed
    assert httpx.get(edge.base + "/health", headers={"x-ok": "a" * 8_000}).status_code == 200


def test_a_body_over_the_limit_is_refused_with_or_without_a_length(edge: Edge):
    big = b"[" + b" " * 1_100_000 + b"]"
    r = httpx.post(edge.base + "/events", content=big, headers=JSON, timeout=30)
    assert r.status_code == 413
    assert r.json()["detail"] == "request body larger than 1000000 bytes"

    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 2.6 MB, without a Content-Length
            yield b" " * 65_536

    r = httpx.post(edge.base + "/events", content=chunks(), headers=JSON, timeout=30)
    assert r.status_code == 413


def test_metrics_sum_every_worker(edge: Edge):
    name = 'funnel_requests_total{method="POST",route="/search",status="200"}'
    before = edge.metric(name)
    with httpx.Client() as client:
        for _ in range(12):
            assert search(edge.base, client).status_code == 200
    assert edge.metric(name) == before + 12
    assert edge.metric("funnel_workers_up") == 2
    texts = []
    for worker in edge.workers():  # each worker answers with the same sums
        transport = httpx.HTTPTransport(uds=edge.worker_socket(worker))
        with httpx.Client(transport=transport, base_url="http://worker") as direct:
            texts.append([ln for ln in direct.get("/metrics").text.splitlines()
                          if ln.startswith(name)])
    assert texts[0] == texts[1] and texts[0]


def test_reload_reaches_every_worker(edge: Edge, served_workspace):
    from funnel.cli.build import run_build

    run_build(served_workspace, ("catalog",))  # a new version becomes current
    assert httpx.post(edge.base + "/admin/reload", timeout=30).status_code == 401
    r = httpx.post(edge.base + "/admin/reload", timeout=300,
                   headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    assert version != r.json()["previous"]
    for worker in edge.workers():  # asked directly, not through the proxy
        transport = httpx.HTTPTransport(uds=edge.worker_socket(worker))
        with httpx.Client(transport=transport, base_url="http://worker") as direct:
            assert direct.get("/health").json()["version"] == version
    assert search(edge.base).json()["version"] == version


def _rss_mb(edge: Edge) -> float:
    procs = [edge.proxy(), *edge.workers()]
    return sum(p.memory_info().rss for p in procs) / 2**20


def test_a_client_that_never_reads_does_not_grow_the_server(edge: Edge):
    """Issue 19 probe: 300 pipelined ``k=200 debug`` searches on one connection, never read,
    grew the old front by 47 MB and kept growing. Through HAProxy a connection holds one
    bounded buffer; the bound here is 40 MB over the proxy and both workers together."""
    body = json.dumps({"query": "", "k": 200, "debug": True}).encode()
    request = (b"POST /search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\n\r\n" % len(body)) + body
    assert len(search(edge.base).content) > 0
    before = _rss_mb(edge)
    peak = before
    with socket.create_connection(("127.0.0.1", edge.port)) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.settimeout(0.5)
        with contextlib.suppress(OSError):  # the kernel buffers fill: sending stops
            for _ in range(200):
                conn.sendall(request)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            peak = max(peak, _rss_mb(edge))
            time.sleep(0.25)
        assert search(edge.base).status_code == 200  # the other worker still serves
    growth = peak - before
    assert growth < 40, f"serving processes grew {growth:.0f} MB"


def test_a_stopped_worker_costs_no_request_and_metrics_answer(edge: Edge):
    """Issue 19 probe: a SIGSTOPped worker hung its requests and /metrics while stopped."""
    victim = edge.workers()[0]  # w0: the first HAProxy tries (balance first)
    victim.suspend()
    try:
        statuses: list[int] = []
        slowest = 0.0

        def client() -> None:
            nonlocal slowest
            with httpx.Client() as c:
                for _ in range(8):
                    t0 = time.monotonic()
                    statuses.append(search(edge.base, c).status_code)
                    slowest = max(slowest, time.monotonic() - t0)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert statuses == [200] * 24
        # one server timeout, then the retry on the other worker
        assert slowest < 2 * SERVER_TIMEOUT_S + 2
        t0 = time.monotonic()
        assert httpx.get(edge.base + "/metrics", timeout=30).status_code == 200
        assert time.monotonic() - t0 < SERVER_TIMEOUT_S * 2 + 1
    finally:
        victim.resume()


def test_sigterm_drains_running_requests_with_no_error(edge: Edge):
    """Issue 19 probe: SIGTERM to the process group gave 2 x 502, 42 x 503 and 31 connection
    errors. The workers sit in their own process groups; HAProxy soft-stops first."""
    assert os.getpgid(edge.proc.pid) != os.getpgid(edge.workers()[0].pid)
    body = json.dumps({"query": "", "k": 200, "debug": True}).encode()
    sent = threading.Barrier(17)
    statuses: list[int] = []
    failures: list[str] = []

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=60)
        try:
            conn.request("POST", "/search", body, JSON)
            sent.wait(timeout=30)
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
        except (OSError, http.client.HTTPException) as err:
            failures.append(repr(err))
        finally:
            conn.close()

    children = psutil.Process(edge.proc.pid).children(recursive=True)
    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    sent.wait(timeout=30)  # every request is on the wire (most wait in HAProxy's queue)
    edge.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert statuses == [200] * 16
    assert edge.proc.wait(timeout=90) == 0
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"left running: {alive}"
