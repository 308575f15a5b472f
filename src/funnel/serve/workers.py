"""Several server processes on one port, each with its own listening socket (``SO_REUSEPORT``).

uvicorn's ``--workers`` shares one listening socket between the processes, and asyncio accepts
every pending connection when its loop wakes: the first idle worker takes a whole burst of
keep-alive connections and keeps them. Measured on the 1M-item benchmark, one of two workers
held 30 of 32 client connections and saturated while the other idled. With a socket per
process the kernel assigns each new connection to one of them by a hash of its addresses, so
connections, and the requests they carry, split evenly in expectation. Workers that die are
started again; SIGTERM / SIGINT stop them all.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import socket
import time
from types import FrameType

APP = "funnel.serve.app:create_app"
UVICORN = {"factory": True, "log_level": "warning", "access_log": False}


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other processes may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _run_worker(host: str, port: int) -> None:
    import uvicorn

    sock = listening_socket(host, port)
    config = uvicorn.Config(APP, **UVICORN)
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(host: str, port: int, workers: int) -> None:
    """Serve until SIGTERM / SIGINT: in this process for one worker, else ``workers`` processes
    (the environment carries the settings: ``FUNNEL_WORKSPACE``, ``FUNNEL_STATE_URL``, ...)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if workers == 1:
        import uvicorn

        uvicorn.run(APP, host=host, port=port, **UVICORN)
        return
    listening_socket(host, port).close()  # fail here, in one line, if the port is taken
    ctx = mp.get_context("spawn")
    procs: list[mp.process.BaseProcess] = []
    stopping = False
    deaths: list[float] = []

    def start() -> mp.process.BaseProcess:
        proc = ctx.Process(target=_run_worker, args=(host, port), daemon=False)
        proc.start()
        return proc

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        procs = [start() for _ in range(workers)]
        while not stopping:
            time.sleep(0.5)
            for i, proc in enumerate(procs):
                if proc.is_alive() or stopping:
                    continue
                now = time.monotonic()
                deaths[:] = [t for t in deaths if now - t < 60] + [now]
                if len(deaths) > 2 * workers:  # they cannot start: restarting would loop
                    raise SystemExit(
                        f"{len(deaths)} server workers exited within a minute (last exit code "
                        f"{proc.exitcode}); run with --workers 1 to see why"
                    )
                procs[i] = start()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # uvicorn finishes in-flight requests on SIGTERM
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
