"""The HAProxy configuration in front of ``funnel serve`` (one worker or N).

A worker is CPU-bound: a search holds its process's GIL for its whole ~10 ms, so balancing
*connections* pins a keep-alive client to one worker and a request can wait behind a busy worker
while another idles. ``maxconn 1`` per worker makes HAProxy hand each request to a worker with
nothing in flight (``balance first``: the warmest one) and queue the rest in one FIFO; the time
a request waited there goes back as ``x-funnel-queue-ms`` (``%Tw``). ``/admin/*`` goes through a
second backend on the same sockets without that slot, so a reload (seconds of model loading in
the worker's thread pool) never holds searches in the queue. HAProxy also owns what a client may
do: header size (a 431 over ``max_header_bytes``; a 400 past ``tune.bufsize``), body size
(Content-Length; a chunked body is cut off by the worker at the same limit), slow clients
(``timeout http-request``: slowloris; ``timeout client``: a client that never reads holds one
bounded buffer, then is closed), and a wedged or dead worker (health checks, ``timeout server``,
retries of the requests that are safe to repeat). Every answer HAProxy makes itself is JSON of
the app's shape, ``{"detail": ...}``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
    max_header_bytes: int = 16_384
    """Headers over this get a 431 (HAProxy's ``req.hdrs``; nginx and Node allow 8-16 KiB)."""
    buffer_bytes: int = 32_768
    """``tune.bufsize``: a request line and headers that do not fit get a 400."""
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

    def __post_init__(self) -> None:
        room = self.buffer_bytes - REWRITE_BYTES - 1024  # and a request line
        if self.max_header_bytes > room:
            raise ValueError(f"max_header_bytes {self.max_header_bytes} must be at most {room} "
                             f"(tune.bufsize {self.buffer_bytes}, less room for rewrites)")


OBSERVE = "observe layer4 error-limit 1 on-error mark-down"
REWRITE_BYTES = 1024
"""``tune.maxrewrite``: buffer room kept for headers HAProxy adds."""

_ERRORS = {
    400: "bad request: malformed, or its request line and headers are over {header_room} "
         "bytes",
    408: "the request did not arrive within {request_timeout_s:g} s",
    413: "request body larger than {max_body_bytes} bytes",
    500: "the proxy failed to handle this request",
    502: "the server worker running this request exited; retry it (it is being restarted)",
    503: "no server worker was free in time (all busy, loading models, or restarting); "
         "retry shortly",
    504: "the server worker did not answer within the server timeout; retry it",
}
"""HAProxy's own answers, as the app's errors are. It has no 431 to replace: a header over the
limit is refused by a rule. HAProxy 2.6 (Debian 12) ignores these where its connection layer
answers before any rule, with its stock page: a request it cannot parse (headers past the
buffer: 400) and headers that did not arrive in time (408); haproxy issue #3032."""


def _ms(seconds: float) -> str:
    return f"{max(int(seconds * 1000), 1)}ms"


def _json(detail: str) -> str:
    """``content-type application/json string '{"detail": ...}'``: the app's error body (in a
    single-quoted HAProxy string nothing is escaped, so an apostrophe goes as \\u0027)."""
    body = json.dumps({"detail": detail}).replace("'", "\\u0027")
    return f"content-type application/json string '{body}'"


def error_detail(status: int, limits: EdgeLimits) -> str:
    """The ``detail`` of HAProxy's own ``status`` answer under ``limits``."""
    if status == 431:
        return f"request headers larger than {limits.max_header_bytes} bytes"
    return _ERRORS[status].format(header_room=limits.buffer_bytes - REWRITE_BYTES,
                                  **asdict(limits))


def _error(status: int, limits: EdgeLimits) -> str:
    return f"    http-error status {status} {_json(error_detail(status, limits))}"


def render_config(host: str, port: int, sockets: Sequence[Path], limits: EdgeLimits) -> str:
    """The ``haproxy.cfg`` text for ``host:port`` in front of one worker per unix socket."""
    paths = [Path(s).resolve() for s in sockets]
    servers = "\n".join(f"    server w{i} {path}" for i, path in enumerate(paths))
    admin = "\n".join(f"    server w{i} {path} track workers/w{i}" for i, path in enumerate(paths))
    errors = "\n".join(_error(status, limits) for status in _ERRORS)
    # a worker that did not answer in time is asked again only if there is another one (the
    # same one is still busy or wedged; measured, HAProxy 2.6 then closed without a 504)
    retry_on = "conn-failure empty-response" + (" response-timeout" if len(paths) > 1 else "")
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
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
    retry-on {retry_on}
{errors}

frontend funnel
    bind {bind}
    http-request del-header {PEER_HEADER}
    acl headers_too_large req.hdrs,length gt {limits.max_header_bytes}
    http-request deny status 431 {_json(error_detail(431, limits))} if headers_too_large
    acl body_too_large req.hdr(content-length) -m int gt {limits.max_body_bytes}
    http-request deny status 413 {_json(error_detail(413, limits))} if body_too_large
    use_backend admin if {{ path_beg /admin/ }}
    default_backend workers

backend workers
    balance first
    option httpchk GET /health
    # alive is answering: a worker without a model (a 503) still answers every request with
    # the app's own reason and fix, and takes the POST /admin/reload that fixes it
    http-check expect rstatus ^(200|503)$
    # only what is safe to repeat is repeated on another worker (a search, a GET)
    http-request disable-l7-retry if METH_POST !{{ path /search }}
    http-response set-header x-funnel-queue-ms %Tw
    # a worker whose socket refuses a connection (it died) is out at once, not after 2 checks
    default-server maxconn 1 check inter 1s fall 2 rise 1 {OBSERVE}
{servers}

backend admin
    # no one-request slot: a reload runs beside the searches, in the worker thread pool
    balance first
    timeout server {_ms(limits.admin_timeout_s)}
    http-request disable-l7-retry
{admin}
"""
