"""``funnel serve --workers N``: N worker processes behind one front, restarted when they die.

Each worker is the FastAPI app under uvicorn on a unix socket of its own; this process runs the
front (:mod:`funnel.serve.front`), which owns the TCP port and hands each request to a free
worker, and watches the workers: one that exits is started again, and SIGTERM / SIGINT drain
the queued and running requests before everything stops. One worker needs no front: uvicorn
serves the port itself.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import shutil
import signal
import tempfile
import time
from pathlib import Path

from funnel.serve.front import Front, Limits

APP = "funnel.serve.app:create_app"
UVICORN = {"factory": True, "log_level": "warning", "access_log": False}
WORKER_KEEP_ALIVE_S = 24 * 3600
"""The front's connection to a worker stays open; uvicorn's default 5 s idle close would race
with the next request written to it."""


def _run_worker(path: str) -> None:
    import uvicorn

    config = uvicorn.Config(APP, uds=path, timeout_keep_alive=WORKER_KEEP_ALIVE_S, **UVICORN)
    uvicorn.Server(config).run()


def serve_workers(host: str, port: int, workers: int) -> None:
    """Serve until SIGTERM / SIGINT: in this process for one worker, else ``workers`` processes
    behind a front (the environment carries the settings: ``FUNNEL_WORKSPACE``, ...)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if workers == 1:
        import uvicorn

        uvicorn.run(APP, host=host, port=port, **UVICORN)
        return
    import uvloop

    uvloop.run(_supervise(host, port, workers))


def _front_limits() -> Limits:
    from funnel.serve.settings import get_settings

    return Limits(max_body_bytes=get_settings().max_body_bytes)


async def _supervise(host: str, port: int, workers: int) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="funnel-serve-"))
    sockets = [runtime / f"worker-{i}.sock" for i in range(workers)]
    front = Front(sockets, _front_limits())
    try:
        await front.start(host, port)  # fails here, in one line, if the port is taken
    except OSError as err:
        shutil.rmtree(runtime, ignore_errors=True)
        raise SystemExit(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    ctx = mp.get_context("spawn")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def start(i: int) -> mp.process.BaseProcess:
        proc = ctx.Process(target=_run_worker, args=(str(sockets[i]),), daemon=False)
        proc.start()
        return proc

    procs = [start(i) for i in range(workers)]
    deaths: list[float] = []
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass
            for i, proc in enumerate(procs):
                if proc.is_alive() or stop.is_set():
                    continue
                now = time.monotonic()
                deaths[:] = [t for t in deaths if now - t < 60] + [now]
                if len(deaths) > 2 * workers:  # they cannot start: restarting would loop
                    raise SystemExit(
                        f"{len(deaths)} server workers exited within a minute (last exit code "
                        f"{proc.exitcode}); run with --workers 1 to see why"
                    )
                procs[i] = start(i)
    finally:
        await front.close()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # uvicorn finishes what it runs on SIGTERM
        for proc in procs:
            await asyncio.to_thread(proc.join, 30)
            if proc.is_alive():
                proc.kill()
        shutil.rmtree(runtime, ignore_errors=True)
