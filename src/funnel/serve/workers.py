"""``funnel serve``: uvicorn workers on unix sockets behind HAProxy, supervised.

This process starts HAProxy (config: :mod:`funnel.serve.haproxy`) on the TCP port and one
uvicorn worker per unix socket, each in a process group of its own: a Ctrl-C or a SIGTERM sent
to the terminal's group reaches only this process, which then stops things in the order that
loses nothing - HAProxy first with a soft stop (SIGUSR1: it stops accepting and lets running
requests finish), then the workers (SIGTERM: uvicorn finishes what it runs, the app flushes its
event spool), then the redis-server it started for ``--state redis-local``. A worker that exits
is started again and its metrics files marked dead; a worker killed mid-write leaves its spool
segment to the next flush (:mod:`funnel.serve.spool`). The workers share
``PROMETHEUS_MULTIPROC_DIR``, so ``/metrics`` on any of them counts all.

One worker runs behind HAProxy too: uvicorn has no timeout for a request that arrives slowly
(slowloris) and, with httptools, no header limit; HAProxy costs ~0.1 ms a request
(docs/serving.md). Without HAProxy installed, one worker is uvicorn alone with what it can
limit: headers (h11's parser), bodies (the app's guard), idle keep-alive.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from funnel.serve.fanout import OWN_SOCKET_ENV, SOCKETS_ENV
from funnel.serve.haproxy import EdgeLimits, HAProxyMissing, find_haproxy, render_config
from funnel.serve.metrics import MULTIPROC_ENV, mark_worker_dead

log = logging.getLogger(__name__)

APP = "funnel.serve.app:create_app"
WORKER_KEEP_ALIVE_S = 75
"""Longer than HAProxy keeps an idle connection to a worker (``pool-purge-delay``, 5 s), so a
worker never closes one just as HAProxy reuses it."""
WORKER_STOP_S = 30.0
ALONE_KEEP_ALIVE_S = 5
"""uvicorn alone: an idle keep-alive connection is closed after this (uvicorn's default)."""
LOCAL_REDIS = "redis-local"
"""``--state redis-local``: a redis-server this process starts, shared by its workers."""


class RedisMissing(RuntimeError):
    """``--state redis-local`` needs the redis-server binary."""


def find_redis() -> str:
    """The redis-server binary, or :class:`RedisMissing` saying how to install it."""
    binary = shutil.which("redis-server") or shutil.which("redis-server",
                                                           path="/usr/sbin:/usr/local/sbin")
    if binary is None:
        raise RedisMissing(
            f"--state {LOCAL_REDIS} starts a redis-server and it is not installed: run "
            "'apt-get install redis-server' (or scripts/setup-system.sh), or pass --state "
            "redis://HOST:PORT/0 of a running one")
    return binary


def serve_workers(host: str, port: int, workers: int, limits: EdgeLimits | None = None,
                  *, local_redis: bool = False) -> None:
    """Serve until SIGTERM / SIGINT: ``workers`` processes behind HAProxy, or one uvicorn
    alone where HAProxy is not installed (the environment carries the settings:
    ``FUNNEL_WORKSPACE``, ...); ``local_redis``: start a redis-server for their state."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    limits = limits or EdgeLimits()
    try:
        haproxy = find_haproxy()
    except HAProxyMissing:
        if workers > 1 or local_redis:
            raise
        serve_alone(host, port, limits)
        return
    redis = find_redis() if local_redis else None
    Supervisor(host, port, workers, limits, haproxy, redis=redis).run()


def serve_alone(host: str, port: int, limits: EdgeLimits) -> None:
    """One uvicorn on the port, no proxy: the h11 parser, because it limits headers (httptools
    does not: a 1 MB header was answered 200); a slow request is never timed out."""
    import uvicorn

    uvicorn.run(APP, factory=True, host=host, port=port, log_level="warning", access_log=False,
                http="h11", h11_max_incomplete_event_size=limits.max_header_bytes,
                timeout_keep_alive=ALONE_KEEP_ALIVE_S)


def check_port(host: str, port: int) -> None:
    """Fail in one line, before anything starts, if ``host:port`` cannot be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy binds
        try:
            probe.bind((host, port))
        except OSError as err:
            raise SystemExit(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def _own_group_dying_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (even by SIGKILL), so no
    worker or proxy outlives it (Linux; elsewhere nothing)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Supervisor:
    """HAProxy and the workers: started, restarted when they die, stopped in order."""

    def __init__(self, host: str, port: int, workers: int, limits: EdgeLimits,
                 haproxy: str, redis: str | None = None) -> None:
        self.host, self.port, self.limits, self.haproxy_bin = host, port, limits, haproxy
        self.workers = workers
        self.redis_bin = redis
        self.redis: subprocess.Popen[bytes] | None = None
        self.state_url = ""
        self.runtime = Path()
        self.sockets: list[Path] = []
        self.metrics_dir = Path()
        self.stop = threading.Event()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.proxy: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None,
               stderr: int | None = None, stdout: int | None = None
               ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=stderr, process_group=0,
                                preexec_fn=_own_group_dying_with_parent)

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env[MULTIPROC_ENV] = str(self.metrics_dir)
        env[SOCKETS_ENV] = os.pathsep.join(str(s) for s in self.sockets)
        env[OWN_SOCKET_ENV] = str(self.sockets[i])
        if self.state_url:
            env["FUNNEL_STATE_URL"] = self.state_url
        return self._spawn(
            [sys.executable, "-m", "uvicorn", APP, "--factory", "--uds", str(self.sockets[i]),
             "--log-level", "warning", "--no-access-log",
             "--timeout-keep-alive", str(WORKER_KEEP_ALIVE_S)], env=env)

    def start_proxy(self) -> subprocess.Popen[bytes]:
        config = self.runtime / "haproxy.cfg"
        config.write_text(render_config(self.host, self.port, self.sockets, self.limits))
        # its log holds every worker's UP/DOWN; shown when HAProxy itself fails
        with open(self.runtime / "haproxy.log", "wb") as errors:
            return self._spawn([self.haproxy_bin, "-db", "-f", str(config)], stderr=errors.fileno())

    def start_redis(self, binary: str) -> subprocess.Popen[bytes]:
        """redis-server on a unix socket in the private runtime directory (only this user can
        reach it, unlike a loopback port), nothing saved to disk; up when it answers PING."""
        sock = self.runtime / "redis.sock"
        with open(self.runtime / "redis.log", "wb") as out:
            proc = self._spawn([binary, "--port", "0", "--unixsocket", str(sock),
                                "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                                "--dir", str(self.runtime), "--loglevel", "warning"],
                               stdout=out.fileno(), stderr=out.fileno())
        deadline = time.monotonic() + 10
        while not _answers_ping(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(self._failure("redis-server", proc.wait(), "redis.log"))
            time.sleep(0.05)
        self.state_url = f"unix://{sock}?db=0"
        return proc

    def _failure(self, name: str, code: int | None, log_name: str) -> str:
        lines = (self.runtime / log_name).read_text(errors="replace").splitlines()
        alerts = [ln for ln in lines if "ALERT" in ln or "#" in ln] or lines or ["(no output)"]
        return f"{name} exited (code {code}): {alerts[-1].strip()}"

    def run(self) -> None:
        check_port(self.host, self.port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        # sockets, HAProxy's config and the workers' metrics files: removed when we stop
        self.runtime = Path(tempfile.mkdtemp(prefix="funnel-serve-"))
        self.sockets = [self.runtime / f"worker-{i}.sock" for i in range(self.workers)]
        self.metrics_dir = self.runtime / "metrics"
        try:
            self.metrics_dir.mkdir()
            if self.redis_bin is not None:
                self.redis = self.start_redis(self.redis_bin)
            self.proxy = proxy = self.start_proxy()
            self.procs = [self.start_worker(i) for i in range(len(self.sockets))]
            self._watch(proxy)
        finally:
            self._drain()
            shutil.rmtree(self.runtime, ignore_errors=True)

    def _watch(self, proxy: subprocess.Popen[bytes]) -> None:
        deaths: list[float] = []
        while not self.stop.wait(0.2):
            if proxy.poll() is not None:
                raise SystemExit(self._failure("haproxy", proxy.returncode, "haproxy.log"))
            if self.redis is not None and self.redis.poll() is not None and self.redis_bin:
                # the sessions it held are gone; the workers reconnect to the new one
                log.warning("redis-server exited (code %s); starting it again",
                            self.redis.returncode)
                self.redis = self.start_redis(self.redis_bin)
            for i, proc in enumerate(self.procs):
                if proc.poll() is None or self.stop.is_set():
                    continue
                mark_worker_dead(proc.pid, str(self.metrics_dir))
                now = time.monotonic()
                deaths[:] = [t for t in deaths if now - t < 60] + [now]
                if len(deaths) > 2 * len(self.procs):  # they cannot start: restarting would loop
                    raise SystemExit(  # each printed its error above (they share stderr)
                        f"{len(deaths)} server workers exited within a minute (last exit code "
                        f"{proc.returncode}); the error they printed above says why")
                log.warning("server worker %d exited (code %s); starting it again", i,
                            proc.returncode)
                self.procs[i] = self.start_worker(i)

    def _drain(self) -> None:
        """HAProxy soft-stops (running requests finish, up to ``drain_s``), then the workers."""
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.send_signal(signal.SIGUSR1)
            try:
                self.proxy.wait(self.limits.drain_s + 5)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()  # uvicorn finishes what it runs; the app flushes its spool
                proc.send_signal(signal.SIGCONT)  # a stopped worker gets its SIGTERM now
        deadline = time.monotonic() + WORKER_STOP_S
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            mark_worker_dead(proc.pid, str(self.metrics_dir))
        if self.redis is not None and self.redis.poll() is None:  # last: workers write to it
            self.redis.terminate()
            try:
                self.redis.wait(10)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()


def _answers_ping(sock: Path) -> bool:
    """Whether a redis-server answers PING on the unix socket ``sock``."""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(1)
            conn.connect(str(sock))
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False
