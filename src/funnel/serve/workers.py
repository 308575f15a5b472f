"""``funnel serve --workers N``: N uvicorn workers on unix sockets behind HAProxy, supervised.

This process starts HAProxy (config: :mod:`funnel.serve.haproxy`) on the TCP port and one
uvicorn worker per unix socket, each in a process group of its own: a Ctrl-C or a SIGTERM sent
to the terminal's group reaches only this process, which then stops things in the order that
loses nothing - HAProxy first with a soft stop (SIGUSR1: it stops accepting and lets running
requests finish), then the workers (SIGTERM: uvicorn finishes what it runs, the app flushes its
event spool). A worker that exits is started again and its metrics files marked dead; a worker
killed mid-write leaves its spool segment to the next flush (:mod:`funnel.serve.spool`). The
workers share ``PROMETHEUS_MULTIPROC_DIR``, so ``/metrics`` on any of them counts all. One
worker needs no proxy: uvicorn serves the port itself.
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
from funnel.serve.haproxy import EdgeLimits, find_haproxy, render_config
from funnel.serve.metrics import MULTIPROC_ENV, mark_worker_dead

log = logging.getLogger(__name__)

APP = "funnel.serve.app:create_app"
UVICORN = {"factory": True, "log_level": "warning", "access_log": False}
WORKER_KEEP_ALIVE_S = 75
"""Longer than HAProxy keeps an idle connection to a worker (``pool-purge-delay``, 5 s), so a
worker never closes one just as HAProxy reuses it."""
WORKER_STOP_S = 30.0


def serve_workers(host: str, port: int, workers: int, limits: EdgeLimits | None = None) -> None:
    """Serve until SIGTERM / SIGINT: uvicorn in this process for one worker, else ``workers``
    processes behind HAProxy (the environment carries the settings: ``FUNNEL_WORKSPACE``, ...)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if workers == 1:
        import uvicorn

        uvicorn.run(APP, host=host, port=port, **UVICORN)
        return
    Supervisor(host, port, workers, limits or EdgeLimits(), find_haproxy()).run()


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
                 haproxy: str) -> None:
        self.host, self.port, self.limits, self.haproxy_bin = host, port, limits, haproxy
        self.workers = workers
        self.runtime = Path()
        self.sockets: list[Path] = []
        self.metrics_dir = Path()
        self.stop = threading.Event()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.proxy: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None,
               stderr: int | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=stderr,
                                process_group=0, preexec_fn=_own_group_dying_with_parent)

    def start_worker(self, i: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env[MULTIPROC_ENV] = str(self.metrics_dir)
        env[SOCKETS_ENV] = os.pathsep.join(str(s) for s in self.sockets)
        env[OWN_SOCKET_ENV] = str(self.sockets[i])
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

    def _proxy_failure(self, code: int | None) -> str:
        lines = (self.runtime / "haproxy.log").read_text(errors="replace").splitlines()
        alerts = [ln for ln in lines if "ALERT" in ln] or lines or ["(no output)"]
        return f"haproxy exited (code {code}): {alerts[-1].strip()}"

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
                raise SystemExit(self._proxy_failure(proxy.returncode))
            for i, proc in enumerate(self.procs):
                if proc.poll() is None or self.stop.is_set():
                    continue
                mark_worker_dead(proc.pid, str(self.metrics_dir))
                now = time.monotonic()
                deaths[:] = [t for t in deaths if now - t < 60] + [now]
                if len(deaths) > 2 * len(self.procs):  # they cannot start: restarting would loop
                    raise SystemExit(
                        f"{len(deaths)} server workers exited within a minute (last exit code "
                        f"{proc.returncode}); run with --workers 1 to see why")
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
