"""The HAProxy configuration in front of ``funnel serve --workers N``.

A worker is CPU-bound: a search holds its process's GIL for its whole ~10 ms, so balancing
*connections* pins a keep-alive client to one worker and a request can wait behind a busy worker
while another idles. ``maxconn 1`` per worker makes HAProxy hand each request to a worker with
nothing in flight (``balance first``: the warmest one) and queue the rest in one FIFO; the time
a request waited there goes back as ``x-funnel-queue-ms`` (``%Tw``). HAProxy also owns what a
client may do: header size (``tune.bufsize``), body size (Content-Length; a chunked body is cut
off by the worker at the same limit), slow clients (``timeout http-request``, ``timeout
client``: a client that never reads holds one bounded buffer, then is closed), and a wedged or
dead worker (health checks, ``timeout server``, retries of the requests that are safe to repeat).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PEER_HEADER = "x-funnel-peer"
"""Marks a request one worker repeats to the others (:mod:`funnel.serve.fanout`); a client's
copy of it is dropped at the edge."""


class HAProxyMissing(RuntimeError):
    """``--workers N`` needs the haproxy binary."""


def find_haproxy() -> str:
    """The haproxy binary, or :class:`HAProxyMissing` saying how to install it."""
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        raise HAProxyMissing(
            "--workers > 1 runs HAProxy in front of the workers and it is not installed: "
            "run 'apt-get install haproxy' (or scripts/setup-system.sh), or serve with --workers 1")
    return binary


@dataclass(frozen=True)
class EdgeLimits:
    """What a client may send and how long each side may take (seconds, bytes)."""

    max_body_bytes: int = 1_000_000
    buffer_bytes: int = 32_768
    """``tune.bufsize``: request line and headers must fit in it, less ``REWRITE_BYTES``."""
    server_timeout_s: float = 30.0
    """A worker must start answering within this; a search is retried once on another."""
    admin_timeout_s: float = 600.0
    """``/admin/*`` (a reload loads every model) may take this long."""
    queue_timeout_s: float = 30.0
    request_timeout_s: float = 10.0
    """The whole request (headers and body) must arrive within this: slowloris."""
    client_timeout_s: float = 75.0
    """Idle keep-alive, and how long a client may leave its responses unread."""
    drain_s: float = 30.0
    """After SIGUSR1 (soft stop), requests still running after this are cut (hard-stop-after)."""
    max_connections: int = 2048

    @property
    def max_header_bytes(self) -> int:
        return self.buffer_bytes - REWRITE_BYTES


OBSERVE = "observe layer4 error-limit 1 on-error mark-down"
REWRITE_BYTES = 1024
"""``tune.maxrewrite``: buffer room kept for headers HAProxy adds."""

_ERRORS = {
    408: "the request did not arrive within {request_timeout_s:g} s",
    500: "the proxy failed to handle this request",
    502: "the server worker running this request exited; retry it (it is being restarted)",
    503: "no server worker was free in time (all busy, loading models, or restarting); "
         "retry shortly",
    504: "the server worker did not answer within the server timeout; retry it",
}


def _ms(seconds: float) -> str:
    return f"{max(int(seconds * 1000), 1)}ms"


def _json(detail: str) -> str:
    """``content-type application/json string '{"detail": ...}'``: the app's error body."""
    body = json.dumps({"detail": detail}).replace("'", "\\'")
    return f"content-type application/json string '{body}'"


def _error(status: int, limits: EdgeLimits) -> str:
    detail = _ERRORS[status].format(request_timeout_s=limits.request_timeout_s)
    return f"    http-error status {status} {_json(detail)}"


def render_config(host: str, port: int, sockets: Sequence[Path], limits: EdgeLimits) -> str:
    """The ``haproxy.cfg`` text for ``host:port`` in front of one worker per unix socket."""
    servers = "\n".join(f"    server w{i} {Path(s).resolve()}" for i, s in enumerate(sockets))
    errors = "\n".join(_error(status, limits) for status in _ERRORS)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    too_large = _json(f"request body larger than {limits.max_body_bytes} bytes")
    return f"""\
global
    maxconn {limits.max_connections}
    nbthread 1
    tune.bufsize {limits.buffer_bytes}
    tune.maxrewrite {REWRITE_BYTES}
    hard-stop-after {_ms(limits.drain_s)}

defaults
    mode http
    option http-buffer-request
    timeout connect 2s
    timeout http-request {_ms(limits.request_timeout_s)}
    timeout client {_ms(limits.client_timeout_s)}
    timeout http-keep-alive {_ms(limits.client_timeout_s)}
    timeout queue {_ms(limits.queue_timeout_s)}
    timeout server {_ms(limits.server_timeout_s)}
    timeout check 2s
    retries 2
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
{errors}

frontend funnel
    bind {bind}
    http-request del-header {PEER_HEADER}
    acl body_too_large req.hdr(content-length) -m int gt {limits.max_body_bytes}
    http-request deny status 413 {too_large} if body_too_large
    default_backend workers

backend workers
    balance first
    option httpchk GET /health
    http-check expect status 200
    # only what is safe to repeat is repeated on another worker (a search, a GET)
    http-request disable-l7-retry if METH_POST !{{ path /search }}
    http-request set-timeout server {_ms(limits.admin_timeout_s)} if {{ path_beg /admin/ }}
    http-response set-header x-funnel-queue-ms %Tw
    # a worker whose socket refuses a connection (it died) is out at once, not after 2 checks
    default-server maxconn 1 check inter 1s fall 2 rise 1 {OBSERVE}
{servers}
"""
