"""The front of ``funnel serve --workers N``: one listening socket, each request to a free worker.

A worker is CPU-bound: a search holds its process's GIL for its whole ~10 ms. Balancing
*connections* over workers (uvicorn's shared socket, or a socket per process with
``SO_REUSEPORT``) pins every keep-alive connection to one worker, so a request can wait behind a
busy worker's queue while another worker idles; on the 1M-item benchmark the same code gave a p99
of 32 ms or 112 ms at 100 req/s depending on how the kernel happened to hash 32 connections.

The front parses each request (httptools), queues it in one FIFO and writes it to a worker with
nothing in flight, over that worker's unix socket; the response is relayed back byte for byte,
with one header added: ``x-funnel-queue-ms``, the time it waited here for a worker.
A request therefore never waits while a worker is free, queued requests survive a worker's
crash, and only the request a dying worker was running fails (with a 502 that says so).
``POST /admin/*`` goes to every worker, so a reload reloads them all, and ``GET /metrics``
merges every worker's metrics with a ``worker`` label, plus the front's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httptools

from funnel.serve.metrics import Metrics
from funnel.serve.worker_metrics import merge_worker_metrics

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
    b"upgrade", b"expect", b"content-length",
})
REASONS = {200: "OK", 400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
           414: "URI Too Long", 431: "Request Header Fields Too Large", 502: "Bad Gateway",
           503: "Service Unavailable"}


@dataclass
class Limits:
    """What one client may send, and how long requests may wait."""

    max_body_bytes: int = 1_000_000
    max_header_bytes: int = 64 * 1024
    max_url_bytes: int = 8 * 1024
    max_queued: int = 4096
    queue_timeout_s: float = 30.0
    idle_timeout_s: float = 75.0
    request_timeout_s: float = 30.0
    """A request must arrive whole within this (a client trickling bytes holds a connection)."""


def http_response(status: int, content_type: str, body: bytes, *, close: bool = False) -> bytes:
    """A complete HTTP/1.1 response the front writes itself."""
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            + ("connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + body


def error_response(status: int, detail: str, *, close: bool = False) -> bytes:
    """A complete HTTP/1.1 response with the app's error body, ``{"detail": ...}``."""
    return http_response(status, "application/json", json.dumps({"detail": detail}).encode(),
                         close=close)


@dataclass(eq=False)
class Job:
    """One client request, re-encoded for a worker (fixed length, no hop-by-hop headers)."""

    method: bytes
    path: bytes
    data: bytes
    client: ClientConnection
    queued_at: float = field(default_factory=time.monotonic)
    waited_ms: float = 0.0
    cancelled: bool = False


class ClientConnection(asyncio.Protocol):
    """One client's connection: parse requests, hand them to the pool one at a time (HTTP/1.1
    answers in order), write the responses back."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.limits = front.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[Job] = deque()
        self.current: Job | None = None
        self.keep_alive = True
        self.closing = False
        self.paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.in_message = False
        self.begun = 0.0
        self._reset_message()

    def _reset_message(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.front.clients.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.keep_alive = False  # served as plain HTTP/1.1 (Upgrade is dropped), then closed
        except httptools.HttpParserError as err:
            reject = err.__context__
            if isinstance(reject, _Reject):
                self._fail(reject.status, reject.detail)
            else:
                self._fail(400, f"malformed HTTP request: {err}")
            return
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.front.clients.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        for job in (self.current, *self.pending):
            if job is not None:
                job.cancelled = True
        self.pending.clear()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reset_message()
        self.in_message = True
        self.begun = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url_bytes:
            raise _Reject(414, f"URL longer than {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.limits.max_header_bytes:
            raise _Reject(431, f"request headers larger than {self.limits.max_header_bytes} bytes")
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" and value.strip().isdigit() and (
                    int(value) > self.limits.max_body_bytes):
                raise _Reject(413, f"request body larger than {self.limits.max_body_bytes} bytes")
            if lowered == b"expect" and value.strip().lower() == b"100-continue":
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body_bytes:
            raise _Reject(413, f"request body larger than {self.limits.max_body_bytes} bytes")
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        method = self.parser.get_method()
        body = b"".join(self.body)
        lines = [method + b" " + self.url + b" HTTP/1.1"]
        lines.extend(n + b": " + v for n, v in self.headers if n.lower() not in HOP_BY_HOP)
        lines.append(b"content-length: " + str(len(body)).encode())
        data = b"\r\n".join(lines) + b"\r\n\r\n" + body
        path = self.url.split(b"?", 1)[0]
        self.pending.append(Job(method, path, data, self))
        if not self.parser.should_keep_alive():
            self.keep_alive = False
        if len(self.pending) > 16 and not self.paused:  # a client pipelining without reading
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._next()

    # the pool's side
    def _next(self) -> None:
        if self.current is None and self.pending and not self.closing:
            self.current = self.pending.popleft()
            self.front.dispatch(self.current)

    def write(self, data: bytes) -> None:
        if not self.closing:
            self.transport.write(data)  # type: ignore[union-attr]

    def finished(self, job: Job, *, broken: bool = False) -> None:
        """The response to ``job`` has been written (or ``broken``: partly, then cut off)."""
        if job is not self.current:
            return
        self.current = None
        if broken or (not self.keep_alive and not self.pending):
            self._close()
            return
        if self.paused and len(self.pending) <= 4:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        self._arm_timer()
        self._next()

    def answer(self, job: Job, status: int, detail: str) -> None:
        """Answer ``job`` from the front itself (the pool could not run it)."""
        close = not self.keep_alive and not self.pending
        self.write(error_response(status, detail, close=close))
        self.finished(job)

    def _fail(self, status: int, detail: str) -> None:
        """Answer a request that cannot be parsed or is over a limit, and close: the rest of
        the stream cannot be trusted to start at a request boundary."""
        if self.current is None:
            self.write(error_response(status, detail, close=True))
        self._close()

    def _close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()  # type: ignore[union-attr]

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.in_message:  # a request is arriving: it has until its deadline
            delay = self.begun + self.limits.request_timeout_s - time.monotonic()
        else:
            delay = self.limits.idle_timeout_s
        self.timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        if self.closing:
            return
        if self.in_message and time.monotonic() - self.begun >= self.limits.request_timeout_s:
            self._fail(408, f"the request did not arrive within "
                            f"{self.limits.request_timeout_s:g} s")
        elif not self.in_message and self.current is None and not self.pending:
            self._close()  # idle keep-alive connection
        else:
            self._arm_timer()


class _Reject(Exception):
    """Raised inside a parser callback to answer the request with ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Upstream(asyncio.Protocol):
    """A keep-alive connection to one worker, carrying one request at a time."""

    def __init__(self, front: Front, worker: int) -> None:
        self.front = front
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.job: Job | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.relayed = False
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, job: Job) -> None:
        self.job = job
        self.relayed = False
        self.parser = httptools.HttpResponseParser(self)
        self.transport.write(job.data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        job = self.job
        if job is None:  # a worker never speaks unasked
            self.transport.close()  # type: ignore[union-attr]
            return
        if not job.cancelled:
            if not self.relayed:  # the status line is in the first chunk: add the wait to it
                end = data.find(b"\r\n") + 2
                if end > 1:
                    data = data[:end] + b"x-funnel-queue-ms: %.2f\r\n" % job.waited_ms + data[end:]
            job.client.write(data)
            self.relayed = True
        try:
            self.parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserError:
            log.warning("worker %d sent a malformed response; reconnecting", self.worker)
            self.transport.close()  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        if self.job is not None and self.job.method == b"HEAD":
            self.on_message_complete()  # no body follows, whatever content-length says

    def on_message_complete(self) -> None:
        job, self.job = self.job, None
        if job is None:
            return
        if not job.cancelled:
            job.client.finished(job)
        self.front.release(self)

    def connection_lost(self, exc: Exception | None) -> None:
        job, self.job = self.job, None
        if job is not None and not job.cancelled:
            if self.relayed:
                job.client.finished(job, broken=True)
            else:
                job.client.answer(job, 502, "the server worker running this request exited; "
                                            "retry it (the worker is being restarted)")
        self.front.lose(self, job)
        if not self.lost.done():
            self.lost.set_result(None)


class Front:
    """Accepts clients on ``host:port`` and runs each request on a free worker (``sockets``)."""

    def __init__(self, sockets: Sequence[Path], limits: Limits | None = None) -> None:
        self.sockets = [Path(s) for s in sockets]
        self.limits = limits or Limits()
        self.clients: set[ClientConnection] = set()
        self.idle: deque[Upstream] = deque()
        self.busy: set[Upstream] = set()
        self.waiting: deque[Job] = deque()
        self.metrics = Metrics()
        self.server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # The loop keeps only weak references to tasks: a broadcast nobody holds can be
        # collected mid-flight, leaving its client waiting forever.
        self.broadcasts: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def ready_workers(self) -> int:
        return len(self.idle) + len(self.busy)

    async def start(self, host: str, port: int) -> None:
        """Listen (raises OSError at once if the port is taken) and connect to the workers."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ClientConnection(self), host, port, backlog=2048, reuse_address=True)
        self._tasks = [asyncio.create_task(self._keep_connected(i))
                       for i in range(len(self.sockets))]
        self._tasks.append(asyncio.create_task(self._expire_waiting()))

    async def _keep_connected(self, worker: int) -> None:
        """Hold one connection to ``worker``; while it is down (loading, restarting), retry."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                _, upstream = await loop.create_unix_connection(
                    lambda: Upstream(self, worker), str(self.sockets[worker]))
            except OSError:  # not listening yet: still loading, or restarting
                await asyncio.sleep(0.2)
                continue
            self.release(upstream)
            await upstream.lost
            if not self._closing:
                await asyncio.sleep(0.05)

    async def _expire_waiting(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            limit = time.monotonic() - self.limits.queue_timeout_s
            while self.waiting and self.waiting[0].queued_at < limit:
                job = self.waiting.popleft()
                if not job.cancelled:
                    self._reject(job, 503, f"no server worker was free for "
                                           f"{self.limits.queue_timeout_s:g} s; retry later")

    def dispatch(self, job: Job) -> None:
        if job.method == b"POST" and job.path.startswith(b"/admin/") or (
                job.method == b"GET" and job.path == b"/metrics"):
            task = asyncio.get_running_loop().create_task(self._broadcast(job))
            self.broadcasts.add(task)
            task.add_done_callback(self.broadcasts.discard)
        elif self.idle:
            self._send(self.idle.pop(), job)  # the warmest: it ran the last request
        elif not self.busy:
            self._reject(job, 503, "no server worker is ready yet (loading models?); "
                                   "retry in a few seconds")
        elif len(self.waiting) >= self.limits.max_queued:
            self._reject(job, 503, f"server overloaded: {len(self.waiting)} requests queued; "
                                   "retry later")
        else:
            self.waiting.append(job)
            self.metrics.inc("funnel_front_queued_total", None, 1,
                             "Requests that waited in the front for a free worker")

    def _send(self, upstream: Upstream, job: Job) -> None:
        self.busy.add(upstream)
        job.waited_ms = (time.monotonic() - job.queued_at) * 1000.0
        self.metrics.observe_ms("funnel_front_wait_ms", job.waited_ms, None,
                                "Time a request waited in the front for a free worker")
        upstream.send(job)

    def _reject(self, job: Job, status: int, detail: str) -> None:
        self.metrics.inc("funnel_front_rejected_total", {"status": str(status)}, 1,
                         "Requests the front answered itself")
        job.client.answer(job, status, detail)

    def release(self, upstream: Upstream) -> None:
        """``upstream`` is free: give it the oldest live waiting request, or park it."""
        self.busy.discard(upstream)
        while self.waiting:
            job = self.waiting.popleft()
            if not job.cancelled:
                self._send(upstream, job)
                return
        self.idle.append(upstream)

    def lose(self, upstream: Upstream, job: Job | None) -> None:
        self.busy.discard(upstream)
        with contextlib.suppress(ValueError):
            self.idle.remove(upstream)
        if job is not None:
            self.metrics.inc("funnel_front_worker_lost_total", None, 1,
                             "Worker connections lost (a worker exited)")
        if not self.busy and not self.idle:  # nobody left to run what waits
            while self.waiting:
                waiting = self.waiting.popleft()
                if not waiting.cancelled:
                    self._reject(waiting, 503, "no server worker is running; retry shortly")

    async def _broadcast(self, job: Job) -> None:
        """Send ``job`` to every worker on fresh connections; for /metrics, merge the answers,
        else relay the first failure, or the first answer when all succeeded."""
        answers = await asyncio.gather(*(self._ask(path, job.data) for path in self.sockets))
        live = [(i, a) for i, a in enumerate(answers) if a is not None]
        if job.cancelled:
            return
        if not live:
            self._reject(job, 503, "no server worker is ready yet; retry in a few seconds")
            return
        if job.path == b"/metrics":
            text = merge_worker_metrics(
                [(str(i), a[2].decode()) for i, a in live if a[0] == 200],
                self.render_metrics())
            job.client.write(http_response(
                200, "text/plain; version=0.0.4; charset=utf-8", text.encode()))
            job.client.finished(job)
            return
        failed = [a for _, a in live if not 200 <= a[0] < 300]
        _, raw, _ = failed[0] if failed else live[0][1]
        job.client.write(raw)
        job.client.finished(job)

    async def _ask(self, path: Path, data: bytes) -> tuple[int, bytes, bytes] | None:
        """(status, the raw response, its body) from the worker at ``path``; None if down."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            return None
        try:
            writer.write(data)
            collector = _Collector()
            parser = httptools.HttpResponseParser(collector)
            raw = bytearray()
            while not collector.done:
                chunk = await reader.read(65536)
                if not chunk:
                    return None
                raw += chunk
                parser.feed_data(chunk)
            return parser.get_status_code(), bytes(raw), b"".join(collector.body)
        except (OSError, httptools.HttpParserError):
            return None
        finally:
            writer.close()

    def render_metrics(self) -> str:
        gauges = (f"# HELP funnel_front_workers_ready Workers connected to the front\n"
                  f"# TYPE funnel_front_workers_ready gauge\n"
                  f"funnel_front_workers_ready {self.ready_workers}\n"
                  f"# HELP funnel_front_waiting Requests waiting for a free worker now\n"
                  f"# TYPE funnel_front_waiting gauge\n"
                  f"funnel_front_waiting {len(self.waiting)}\n")
        return gauges + self.metrics.render()

    async def close(self, grace_s: float = 30.0) -> None:
        """Stop accepting, let queued and running requests finish (up to ``grace_s``), close."""
        if self.server is not None:
            self.server.close()
        deadline = time.monotonic() + grace_s
        while (self.waiting or self.busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for upstream in [*self.idle, *self.busy]:
            upstream.transport.close()  # type: ignore[union-attr]
        for client in list(self.clients):
            client._close()


class _Collector:
    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.done = False

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True
