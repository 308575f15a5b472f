"""``POST /admin/*`` reaches every worker of ``funnel serve --workers N``.

HAProxy sends a request to one worker and cannot fan out. The worker that got an admin request
runs it, and when it succeeded repeats it (same path, headers and body, so each peer checks the
token itself) to every other worker over its unix socket, all at once, before answering: when
``POST /admin/reload`` returns 200, every worker serves the new version. A peer that is down
is skipped (a worker loads the current artifact when it starts); a peer that fails or does not
answer in time (300 s, within HAProxy's 600 s for ``/admin/*``) turns the answer into a 503
that names it. The supervisor tells each worker the sockets (``FUNNEL_WORKER_SOCKETS``) and its
own (``FUNNEL_WORKER_SOCKET``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funnel.serve.haproxy import PEER_HEADER

SOCKETS_ENV = "FUNNEL_WORKER_SOCKETS"
OWN_SOCKET_ENV = "FUNNEL_WORKER_SOCKET"
_PEER = PEER_HEADER.encode()
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length",
                         b"te", b"trailer", b"upgrade", b"expect"})


def peers_from_env() -> list[str]:
    """The other workers' sockets, from the supervisor's environment (none with one worker)."""
    own = os.environ.get(OWN_SOCKET_ENV, "")
    every = [s for s in os.environ.get(SOCKETS_ENV, "").split(os.pathsep) if s]
    return [s for s in every if s != own]


async def ask_peer(path: str, request: bytes, timeout_s: float) -> tuple[int, str]:
    """(status, body) of ``request`` sent to the worker at ``path``; status 0 if it is down."""
    try:
        reader, writer = await asyncio.open_unix_connection(path)
    except OSError:  # not listening: restarting (it loads the current artifact at start)
        return 0, ""
    try:
        writer.write(request)
        raw = await asyncio.wait_for(reader.read(), timeout_s)  # Connection: close -> EOF
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 502
    return status, body.decode("utf-8", "replace")


class AdminFanOut:
    """Repeat a successful ``POST /admin/*`` to the ``peers`` (plain ASGI)."""

    def __init__(self, app: ASGIApp, *, peers: Sequence[str], timeout_s: float = 300.0) -> None:
        self.app = app
        self.peers = list(peers)
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST"
                or not scope["path"].startswith("/admin/") or not self.peers
                or any(name == _PEER for name, _ in scope["headers"])):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        messages: list[Message] = []
        while True:  # admin bodies are small (the edge limits them)
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, replayed, hold)
        status = next((m["status"] for m in held if m["type"] == "http.response.start"), 500)
        if 200 <= status < 300:
            failed = await self._fan_out(scope, b"".join(chunks))
            if failed:
                body = json.dumps({"detail": "reloaded here, but not on every worker: "
                                   + "; ".join(failed)}).encode()
                held = [{"type": "http.response.start", "status": 503,
                         "headers": [(b"content-type", b"application/json"),
                                     (b"content-length", b"%d" % len(body))]},
                        {"type": "http.response.body", "body": body}]
        for message in held:
            await send(message)

    async def _fan_out(self, scope: Scope, body: bytes) -> list[str]:
        target = scope["path"].encode() + (b"?" + scope["query_string"]
                                           if scope.get("query_string") else b"")
        headers = [n + b": " + v for n, v in scope["headers"] if n.lower() not in _HOP_BY_HOP]
        request = b"\r\n".join([
            b"POST " + target + b" HTTP/1.1", *headers, _PEER + b": 1",
            b"content-length: %d" % len(body), b"connection: close"]) + b"\r\n\r\n" + body
        answers = await asyncio.gather(
            *(ask_peer(path, request, self.timeout_s) for path in self.peers),
            return_exceptions=True)
        failed = []
        for path, answer in zip(self.peers, answers, strict=True):
            name = os.path.basename(path)
            if isinstance(answer, BaseException):
                failed.append(f"{name}: {type(answer).__name__} {answer}".strip())
            elif answer[0] and not 200 <= answer[0] < 300:
                failed.append(f"{name}: {answer[0]} {answer[1][:200]}")
        return failed
