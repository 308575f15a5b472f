"""Serving: the whole funnel over HTTP vs the same stages called in-process, on one catalog.

Builds a synthetic marketplace (1,000,000 items on the full run), starts ``funnel serve`` as a
separate process on loopback, and drives it from a second process with an open-loop load
generator (requests are sent on a fixed schedule and latency is measured from the scheduled
time, so a slow server cannot hide its queueing: no coordinated omission). Every request is a
search with ~1000 recalled candidates, 500 ranked by the DeepFM ranker, 20 returned.

The 1M-item workspace is built from 300,000 events (fewer events per item than the quick run;
the catalog, the HNSW vector index over every item with an embedding, the lexical index and
the DeepFM ranker are all real; items that never appear in a session get cold-start vectors
from similar items, so the vector index holds the whole catalog), without the suggestion stage
(a search does not use it) or the comparison rankers (LR, FM, GBDT).
Reuse a built workspace with ``--workspace DIR`` (built there on first use); ``--build-only``
stops after the build, so the latency runs can wait for a quiet machine.

Figures:
- p50/p99 latency and errors at a fixed 100 req/s for 60 s (``--quick``: 10 s);
- the highest rate whose p99 stays <= 100 ms with zero errors (rates stepped up);
- the same requests through ``Engine.run`` in this process without HTTP; the overhead ratio is
  (HTTP p50 - in-process p50) / in-process p50, both sequential, measured in alternating blocks
  of 100 requests (the machine's speed drifts between minutes more than the overhead).

Requests are logged users' searches with their last 30 clicks / impressions / bookings first
posted to ``/events`` (``--anonymous``: no user, no session). ``funnel serve`` runs HAProxy in
front of its workers (``edge``; uvicorn alone only where HAProxy is not installed), which hands
each request to a free worker (``front_cpu_ms_per_request`` is what HAProxy and the supervisor
cost; ``busiest_worker_cpu_share`` how evenly the workers were used); with more than one worker
the online state lives in the private redis-server ``funnel serve --state redis-local`` starts.
Two probes of issue 19 run last, against the same server: ``slow_reader_rss_growth_mb`` (a
client pipelines 200 ``k=200 debug`` searches and never reads) and, behind HAProxy,
``acked_events_lost_after_kill9`` (events posted while a worker is killed with SIGKILL; every
acknowledged one must reach the event store).

    python benchmarks/serve.py --quick
    python benchmarks/serve.py --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


JSON = {"content-type": "application/json"}


def post_search(conn: Any, body: bytes, timings: list | None = None) -> int:
    """POST /search ``body`` on an ``http.client`` connection and read the reply; its status.
    ``timings`` gets (ms waiting in the front for a worker, ms in the worker) when both are
    known (the front's ``x-funnel-queue-ms``, the worker's ``x-funnel-time-ms``)."""
    conn.request("POST", "/search", body, JSON)
    resp = conn.getresponse()
    resp.read()
    if timings is not None:
        queue, work = resp.getheader("x-funnel-queue-ms"), resp.getheader("x-funnel-time-ms")
        if queue is not None and work is not None:
            timings.append((float(queue), float(work)))
    return int(resp.status)


def drive(base: str, bodies: list[bytes], rate: float, seconds: float, out: mp.Queue,
          connections: int = 32) -> None:
    """Open-loop load at ``rate`` req/s for ``seconds``; puts (latencies_ms, errors, sent).

    ``connections`` threads each keep one HTTP/1.1 keep-alive connection (as a load balancer's
    pool would) and take the next scheduled request when free. The client is the standard
    library's ``http.client``: it costs a fraction of httpx's CPU per request, and on a 2-core
    machine every client cycle is taken from the server under test.
    """
    import http.client
    import itertools
    import threading
    from urllib.parse import urlparse

    url = urlparse(base)
    n = int(rate * seconds)
    latencies: list[float] = []
    timings: list[tuple[float, float]] = []
    errors = 0
    lock = threading.Lock()
    counter = itertools.count()
    conns = [http.client.HTTPConnection(url.hostname, url.port, timeout=10.0)
             for _ in range(connections)]
    for c in conns:  # connect before the clock starts
        c.connect()
    start = time.perf_counter() + 0.2

    def worker(conn: http.client.HTTPConnection) -> None:
        nonlocal errors
        while True:
            with lock:
                i = next(counter)
            if i >= n:
                return
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                ok = post_search(conn, bodies[i % len(bodies)], timings) == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()  # reconnects on the next request
            ms = (time.perf_counter() - due) * 1000.0
            with lock:
                latencies.append(ms)
                errors += 0 if ok else 1

    threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    out.put((latencies, errors, n, timings))


def run_load(base: str, bodies: list[bytes], rate: float, seconds: float) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=drive, args=(base, bodies, rate, seconds, q))
    proc.start()
    latencies, errors, sent, timings = q.get(timeout=seconds + 300)
    proc.join(timeout=60)
    queue_ms, worker_ms = [t[0] for t in timings], [t[1] for t in timings]
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "errors": float(errors), "requests": float(sent), "rate": rate,
            "p90_ms": percentile(latencies, 90),
            "p99_queue_ms": percentile(queue_ms, 99), "p99_worker_ms": percentile(worker_ms, 99)}


def sequential_http(base: str, bodies: list[bytes], n: int, server_pid: int
                    ) -> tuple[list[float], float]:
    """One request at a time: (latencies ms, server CPU ms per request).

    CPU time is the contention-proof half of the overhead figure: on a shared machine wall
    time includes waiting for a core, CPU time does not."""
    import http.client
    from urllib.parse import urlparse

    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30.0)

    def post(body: bytes) -> None:
        status = post_search(conn, body)
        if status != 200:
            raise SystemExit(f"POST /search {body!r}: HTTP {status}")

    out = []
    post(bodies[0])
    cpu0 = server_cpu_s(server_pid)
    for i in range(n):
        t0 = time.perf_counter()
        post(bodies[i % len(bodies)])
        out.append((time.perf_counter() - t0) * 1000.0)
    cpu_ms = (server_cpu_s(server_pid) - cpu0) * 1000.0 / n
    conn.close()
    return out, cpu_ms


Call = tuple[str | None, str, Any]
"""One in-process search: (user id or None, query, the user's RecentActions)."""


def load_engine(artifact: Path) -> Any:
    import faiss
    import torch

    from funnel.engine.core import Engine

    torch.set_num_threads(1)  # as the server does
    faiss.omp_set_num_threads(1)
    return Engine.load(artifact)


def run_call(engine: Any, call: Call) -> tuple[Any, float]:
    """One in-process search, after the idle gap the HTTP client's round trip leaves the server:
    on a busy machine the scheduler favours a process that sleeps between requests, so a tight
    loop would be slowed by others more than the server is. At the wall clock's time, as the
    server runs a search (the session in progress is cut at it). (StageResult, wall ms)."""
    time.sleep(0.002)
    user, query, state = call
    t0 = time.perf_counter()
    r = engine.run(query=query, user_id=user, market=None, filters={}, k=20, state=state,
                   now_ms=int(time.time() * 1000))
    return r, (time.perf_counter() - t0) * 1000.0


def in_process(engine: Any, calls: list[Call], n: int) -> tuple[list[float], dict[str, float]]:
    times, stages = [], {"recall": [], "rank": [], "rerank": []}
    cpu0 = time.process_time()
    for i in range(n):
        r, ms = run_call(engine, calls[i % len(calls)])
        times.append(ms)
        for s in stages:
            stages[s].append(r.timings_ms[s])
    cpu_ms = (time.process_time() - cpu0) * 1000.0 / n
    out = {f"inproc_{s}_p50_ms": percentile(v, 50) for s, v in stages.items()}
    out["inproc_cpu_ms_per_request"] = cpu_ms
    return times, out


def paired_overhead(engine: Any, calls: list[Call], bodies: list[bytes], base: str,
                    rounds: int, per: int) -> tuple[list[float], list[float]]:
    """The same requests in alternating blocks, in-process then over HTTP: (in-process ms,
    HTTP ms). This machine's speed drifts by 15-30% between minutes (shared host), more than
    the overhead being measured; alternating blocks puts both sides in the same minutes."""
    import http.client
    from urllib.parse import urlparse

    url = urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30.0)
    inproc, over_http = [], []
    for r in range(rounds):
        block = range(r * per, (r + 1) * per)
        for i in block:
            inproc.append(run_call(engine, calls[i % len(calls)])[1])
        for i in block:
            t0 = time.perf_counter()
            post_search(conn, bodies[i % len(bodies)])
            over_http.append((time.perf_counter() - t0) * 1000.0)
    conn.close()
    return inproc, over_http


def reference_cpu_ms(engine: object, calls: list[Call], n: int) -> float:
    """CPU ms per request on the same engine through the reference paths the fast ones replaced
    (pairwise query match, every ranker field encoded per candidate, recall sources on a thread
    pool, ids looked up by the ranker); ``tests/serve/test_fast_paths.py`` shows both give
    identical results, this shows what the fast paths save."""
    from funnel.engine.core import MATCH_COLUMNS
    from funnel.features.query_match import query_match_features
    from funnel.recall.merger import Merger

    class Pairwise:
        def __init__(self, columns: list[list]) -> None:
            self.columns = columns

        def features(self, query: str, rows: np.ndarray) -> dict[str, np.ndarray]:
            picked = [[col[r] for r in rows] for col in self.columns]
            return query_match_features([query] * len(rows), *picked)

    e: Any = engine
    rank = e.rank
    old = e.recall.merger
    pooled = Merger(old.sources, quotas=old.quotas, timeout_s=old.timeout_s)
    changes = {"recall": dataclasses.replace(e.recall, merger=pooled),
               "terms": Pairwise([e.catalog.columns[c].tolist() for c in MATCH_COLUMNS])}
    if "rank_rows" in {f.name for f in dataclasses.fields(e)}:  # engines before the one table
        changes["rank_rows"] = None
    e = dataclasses.replace(e, **changes)  # a reference engine: the served one is frozen
    if rank is not None:
        rank.term_index = Pairwise([rank.item_cols[c].tolist() for c in MATCH_COLUMNS])
        rank.item_codes = {}
        fs = rank.ranker.features_
        names = [s.name for s in fs.specs if s.name not in (rank.item_parts or {})]
        rank._encode_request_fields = lambda cols, rows: fs.encode_fields(cols, names)
    cpu0 = time.process_time()
    for i in range(n):
        run_call(e, calls[i % len(calls)])
    cpu_ms = (time.process_time() - cpu0) * 1000.0 / max(n, 1)
    pooled.close()
    return cpu_ms


def server_tree(pid: int) -> list[Any]:
    """The server ``pid`` and its processes, without the redis-server it may run: the state
    store is not the server (runs before ``--state redis-local`` counted it nowhere)."""
    import psutil

    proc = psutil.Process(pid)
    return [proc, *(p for p in proc.children(recursive=True)
                    if not p.name().startswith("redis-server"))]


def worker_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each process of the server (the supervisor and its workers)."""
    return {p.pid: sum(p.cpu_times()[:2]) for p in server_tree(pid)}


def server_cpu_s(pid: int) -> float:
    """CPU seconds so far of the server and its workers together."""
    return sum(worker_cpu(pid).values())


def wait_until_idle(pid: int, quiet_s: float = 2.0, limit_s: float = 900.0) -> None:
    """Block until the server and its workers used < 5% of a core for ``quiet_s`` (all loaded)."""
    deadline = time.monotonic() + limit_s
    last = server_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = server_cpu_s(pid)
        if now - last < 0.05 * quiet_s:
            return
        last = now


def server_processes(pid: int) -> tuple[list[Any], list[Any]]:
    """(the edge: supervisor and HAProxy; the uvicorn workers) of the server ``pid``."""
    proc, *children = server_tree(pid)
    workers = [p for p in children if "uvicorn" in " ".join(p.cmdline())]
    return [proc, *(p for p in children if p not in workers)], workers


def has_haproxy(pid: int) -> bool:
    """Whether the server ``pid`` runs HAProxy in front of its workers (else uvicorn alone)."""
    edge, _ = server_processes(pid)
    return any("haproxy" in p.name() for p in edge)


def rss_mb(pid: int) -> float:
    edge, workers = server_processes(pid)
    return sum(p.memory_info().rss for p in [*edge, *workers]) / 2**20


def slow_reader_growth_mb(port: int, pid: int, requests: int = 200, watch_s: float = 6.0
                          ) -> float:
    """Peak RSS growth of the server's processes while one client pipelines ``requests``
    ``k=200 debug`` searches on one connection and never reads (issue 19 probe: +47 MB in the
    old front and growing)."""
    body = json.dumps({"query": "", "k": 200, "debug": True}).encode()
    request = (b"POST /search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
               b"content-length: %d\r\n\r\n" % len(body)) + body
    before = peak = rss_mb(pid)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.settimeout(0.5)
        try:
            for _ in range(requests):
                conn.sendall(request)
        except OSError:  # the buffers are full: the server stopped reading from us
            pass
        deadline = time.monotonic() + watch_s
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(pid))
            time.sleep(0.25)
    return peak - before


def events_during_kill9(base: str, pid: int, seconds: float = 4.0) -> list[str]:
    """Post events from 3 clients while one worker is killed with SIGKILL halfway; the ids
    of the events acknowledged (200)."""
    import signal
    import threading
    import uuid

    acked: list[str] = []
    stop = threading.Event()

    def post(user: str) -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            while not stop.is_set():
                ids = [f"bench-k9-{uuid.uuid4().hex}" for _ in range(5)]
                events = [{"event_id": i, "user_id": user, "event_type": "click",
                           "item_id": "i0000001"} for i in ids]
                try:
                    if c.post("/events", json={"events": events}).status_code == 200:
                        acked.extend(ids)
                except httpx.HTTPError:  # the worker died with it: not acknowledged
                    pass

    threads = [threading.Thread(target=post, args=(f"bench-k9-u{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(seconds / 2)
    _, workers = server_processes(pid)
    os.kill(workers[0].pid, signal.SIGKILL)
    time.sleep(seconds / 2)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    return acked


def acked_events_lost(ws: Any, acked: list[str]) -> int:
    """How many of ``acked`` are not in the event store once the spool is ingested (as the
    next start does); call with the server stopped."""
    from funnel.data.store import EventStore
    from funnel.serve.spool import EventSpool

    EventSpool(ws.root / "spool").flush_to_store(ws)
    with EventStore.open(ws.store_path, read_only=True) as store:
        stored = {row[0] for row in store.con.execute(
            "SELECT event_id FROM events WHERE event_id LIKE 'bench-k9-%'").fetchall()}
    return len(set(acked) - stored)


def sample_queries(ws_root: Path, n: int = 500, seed: int = 0) -> list[str]:
    import duckdb

    con = duckdb.connect(str(ws_root / "store.duckdb"), read_only=True)
    rows = [r[0] for r in con.execute(
        "SELECT query FROM events WHERE event_type = 'search' AND query IS NOT NULL").fetchall()]
    con.close()
    random.Random(seed).shuffle(rows)
    return rows[:n] or ["loft"]


def sample_requests(ws_root: Path, n: int = 500, seed: int = 0, history: int = 30
                    ) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Logged searches of ``n`` distinct users with a session: (user_id, query, the user's
    last ``history`` clicks, impressions and bookings before that search, as event dicts).

    Replaying the history into the server's online state first makes each search what it is
    in production: vector and co-visitation recall from the session, the session features in
    the ranker, so ~1000 candidates are recalled (an anonymous search recalls ~700). Every
    query is ordered in full (events share timestamps), so runs replay the same sessions."""
    import duckdb

    con = duckdb.connect(str(ws_root / "store.duckdb"), read_only=True)
    searches = con.execute(
        """
        SELECT s.user_id, s.query, s.ts FROM events s
        WHERE s.event_type = 'search' AND s.query IS NOT NULL AND s.user_id IS NOT NULL
          AND EXISTS (SELECT 1 FROM events c WHERE c.user_id = s.user_id
                      AND c.event_type = 'click' AND c.ts < s.ts)
        ORDER BY s.user_id, s.ts, s.query
        """
    ).fetchall()
    rng = random.Random(seed)
    rng.shuffle(searches)
    picked, seen = [], set()
    for user, query, ts in searches:
        if user not in seen:
            seen.add(user)
            picked.append((user, query, ts))
        if len(picked) == n:
            break
    con.execute("CREATE TEMP TABLE picked (user_id VARCHAR, query VARCHAR, ts TIMESTAMPTZ)")
    con.executemany("INSERT INTO picked VALUES (?, ?, ?)", picked)
    rows = con.execute(
        f"""
        SELECT user_id, event_type, item_id, ts_ms, request_id, position, dwell_ms FROM (
            SELECT e.user_id, e.event_type, e.item_id, epoch_ms(e.ts) AS ts_ms, e.request_id,
                   e.position, e.dwell_ms,
                   row_number() OVER (PARTITION BY e.user_id ORDER BY e.ts DESC,
                       e.event_type, e.item_id, e.request_id, e.position) AS back
            FROM events e JOIN picked p ON e.user_id = p.user_id AND e.ts < p.ts
            WHERE e.event_type IN ('click', 'impression', 'booking') AND e.item_id IS NOT NULL)
        WHERE back <= {int(history)}
        ORDER BY user_id, ts_ms, event_type, item_id, request_id, position
        """
    ).fetchall()
    con.close()
    events: dict[str, list[dict[str, Any]]] = {u: [] for u, _, _ in picked}
    for user, kind, item, ts_ms, request_id, position, dwell_ms in rows:
        events[user].append({"user_id": user, "event_type": kind, "item_id": item,
                             "ts_ms": int(ts_ms), "request_id": request_id,
                             "position": position, "dwell_ms": dwell_ms})
    return [(u, q, events[u]) for u, q, _ in picked]


def ending_now(requests: list[tuple[str, str, list[dict[str, Any]]]]
               ) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Each user's history moved in time to end now: the server cuts the state to the session
    in progress at its clock (30-minute gap), so logged histories as they are would all be over
    and every search would run without its session (measured: less work over HTTP than in
    process, an overhead of -34%). So a run must end within the gap (a quick run: ~5 min)."""
    now_ms = int(time.time() * 1000)
    out = []
    for user, query, events in requests:
        shift = now_ms - max((e["ts_ms"] for e in events), default=now_ms)
        out.append((user, query, [e | {"ts_ms": e["ts_ms"] + shift} for e in events]))
    return out


def load_state(base: str, requests: list[tuple[str, str, list[dict[str, Any]]]]) -> None:
    """POST each user's history to /events, so the server's online state holds the session."""
    from datetime import UTC, datetime

    with httpx.Client(base_url=base, timeout=60.0) as c:
        for _, _, events in requests:
            body = [{k: v for k, v in e.items() if k != "ts_ms" and v is not None}
                    | {"ts": datetime.fromtimestamp(e["ts_ms"] / 1000, UTC).isoformat()}
                    for e in events]
            c.post("/events", json={"events": body}).raise_for_status()


def build_workspace(root: Path, items: int, events: int) -> tuple[object, dict[str, float]]:
    """Generate, ingest, sessionize and build the serving stages, timing each step."""
    from funnel.build import run_build
    from funnel.data.ingest import generated_files, ingest_file
    from funnel.data.store import EventStore
    from funnel.data.synthetic import MarketplaceConfig, generate
    from funnel.pipeline.sessions import build_sessions
    from funnel.workspace import Workspace

    times: dict[str, float] = {}
    t0 = time.perf_counter()

    def step(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        times[f"build_{name}_s"] = round(now - t0, 1)
        print(f"  {name:<11} {now - t0:7.1f} s   (load average {os.getloadavg()[0]:.1f})",
              flush=True)
        t0 = now

    ws = Workspace.init(root)
    with ws.config_path.open("a") as f:
        # the server ranks with DeepFM only: skip training the comparison rankers
        f.write('\n[rank]\nmodels = ["deepfm"]\nserve_model = "deepfm"\n')
    raw = ws.raw_dir / f"seed0-n{events}-i{items}"
    generate(MarketplaceConfig(n_events=events, seed=0, n_items=items), raw)
    step("generate")
    for path in generated_files(raw):
        ingest_file(ws, path)
    step("ingest")
    with EventStore.open(ws.store_path) as store:
        build_sessions(store.con)
    step("sessions")
    stages = ("catalog", "embeddings", "recall", "rank", "rerank")
    pending = list(stages)

    def on_stage(name: str) -> None:
        if name != pending[0]:  # the previous stage just finished
            step(pending.pop(0))

    run_build(ws, stages, on_stage=on_stage)
    step(pending.pop(0))
    return ws, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small catalog, short runs")
    ap.add_argument("--json", type=Path, help="write the figures as a flat JSON object")
    ap.add_argument("--items", type=int, help="catalog size (default 1,000,000; quick 20,000)")
    ap.add_argument("--events", type=int, help="events (default 300,000; quick 100,000)")
    ap.add_argument("--workspace", type=Path, help="reuse a built workspace")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="uvicorn worker processes (default: one per core)")
    ap.add_argument("--anonymous", action="store_true",
                    help="anonymous searches (no user, no session) instead of logged users' "
                         "searches with their session replayed into the online state")
    ap.add_argument("--build-only", action="store_true",
                    help="build the workspace (with --workspace DIR) and stop")
    args = ap.parse_args()
    items = args.items or (20_000 if args.quick else 1_000_000)
    events = args.events or (100_000 if args.quick else 300_000)
    fixed_s = 10.0 if args.quick else 60.0
    step_s = 5.0 if args.quick else 15.0

    from funnel.workspace import Workspace

    root = args.workspace or Path(tempfile.mkdtemp(prefix="funnel-serve-bench-"))
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    build_times: dict[str, float] = {}
    if (root / "artifacts" / "current").exists():
        ws = Workspace.open(root)
        print(f"reusing the workspace in {root}")
    else:
        print(f"building a {items:,}-item marketplace from {events:,} events in {root} ...")
        ws, build_times = build_workspace(root, items, events)
    build_s = time.perf_counter() - t0
    if args.build_only:
        print(f"built in {build_s:.0f} s: {root}")
        return
    artifact = ws.artifacts.require_current()
    from funnel.features.personalization import RecentActions
    from funnel.serve.state import apply_events

    if args.anonymous:
        calls: list[Call] = [(None, q, RecentActions()) for q in sample_queries(ws.root)]
        bodies = [json.dumps({"query": q, "k": 20}).encode() for _, q, _ in calls]
        requests: list[tuple[str, str, list[dict[str, Any]]]] = []
    else:
        requests = ending_now(sample_requests(ws.root))
        calls = [(u, q, apply_events(RecentActions(max_len=50), ev)) for u, q, ev in requests]
        bodies = [json.dumps({"user_id": u, "query": q, "k": 20}).encode()
                  for u, q, _ in requests]
    kind = "anonymous" if args.anonymous else "personalized"
    print(f"in-process: {200 if args.quick else 1000} {kind} searches through Engine.run ...",
          flush=True)
    engine = load_engine(artifact)
    inproc, stage_p50 = in_process(engine, calls, 200 if args.quick else 1000)
    print(f"  p50 {percentile(inproc, 50):.2f} ms, p99 {percentile(inproc, 99):.2f} ms; "
          "starting the server ...", flush=True)
    port = free_port()
    # several workers share the state through the redis-server funnel serve starts itself
    state_url = "redis-local" if args.workers > 1 else "memory://"
    env = dict(os.environ, FUNNEL_STATE_URL=state_url)
    # a file, not a pipe: a server that logs more than a pipe holds would block on write
    server_log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [sys.executable, "-m", "funnel.cli", "serve", "--workspace", str(ws.root),
         "--port", str(port), "--workers", str(args.workers), "--state", state_url],
        env=env, stdout=subprocess.DEVNULL, stderr=server_log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server_log.seek(0)
                raise SystemExit(f"server did not start: {server_log.read().decode()[-2000:]}")
            time.sleep(0.5)
        wait_until_idle(server.pid)  # every worker has loaded its engine
        edge = "haproxy" if has_haproxy(server.pid) else "uvicorn"
        n_items_served = httpx.get(base + "/health").json()["items"]
        load_state(base, requests)
        if requests:  # let the spool's 10-second flush write those events to the store first
            time.sleep(11.0)
            wait_until_idle(server.pid)
        seq, server_cpu_ms = sequential_http(base, bodies, 200 if args.quick else 1000,
                                             server.pid)
        pair_in, pair_http = paired_overhead(engine, calls, bodies, base,
                                             5 if args.quick else 10, 100)
        print(f"  alternating blocks: in-process p50 {percentile(pair_in, 50):.2f} ms, HTTP "
              f"p50 {percentile(pair_http, 50):.2f} ms", flush=True)
        print(f"  HTTP one at a time: p50 {percentile(seq, 50):.2f} ms; "
              f"fixed 100 req/s for {fixed_s:.0f} s ...", flush=True)
        before = worker_cpu(server.pid)
        fixed = run_load(base, bodies, 100.0, fixed_s)
        after = worker_cpu(server.pid)
        used = {p: after.get(p, 0.0) - t for p, t in before.items()}
        # behind HAProxy the supervisor, HAProxy (and redis-server) are the front: no stage
        edge_procs, _ = server_processes(server.pid)
        front_s = sum(used.pop(p.pid, 0.0) for p in edge_procs) if edge == "haproxy" else 0.0
        busiest_share = max(used.values()) / max(sum(used.values()), 1e-9)
        front_cpu_ms = front_s * 1000.0 / max(fixed["requests"], 1.0)
        print(f"  100 req/s: p50 {fixed['p50_ms']:.1f} ms, p99 {fixed['p99_ms']:.1f} ms, "
              f"errors {fixed['errors']:.0f}; stepping the rate up ...", flush=True)
        max_rps = 0.0
        for rate in (25, 50, 100, 150, 200, 300, 400, 600, 800):
            res = run_load(base, bodies, float(rate), step_s)
            print(f"  {rate:>4} req/s: p50 {res['p50_ms']:7.1f} ms  p99 {res['p99_ms']:7.1f} ms"
                  f"  errors {res['errors']:.0f}")
            if res["p99_ms"] <= 100.0 and res["errors"] == 0:
                max_rps = float(rate)
            else:
                break
        print("  probes: a client that never reads ...", flush=True)
        slow_reader_mb = slow_reader_growth_mb(port, server.pid)
        acked = events_during_kill9(base, server.pid) if edge == "haproxy" else []
    finally:
        server.terminate()  # SIGTERM: HAProxy drains, then the workers flush their spools
        server.wait(timeout=180)
    # last: it switches the engine to the reference paths
    stage_p50["inproc_reference_cpu_ms_per_request"] = reference_cpu_ms(
        engine, calls, 100 if args.quick else 500)
    engine.close()

    p50_in, p50_http = percentile(inproc, 50), percentile(seq, 50)
    lost_after_kill9 = float(acked_events_lost(ws, acked)) if acked else float("nan")
    figures = {
        "edge": edge,
        "items": float(n_items_served),
        "workers": float(args.workers),
        "personalized": float(not args.anonymous),
        "state": state_url.split(":")[0],
        "events": float(events),
        "build_s": round(build_s, 1),
        **build_times,
        "p50_ms": round(fixed["p50_ms"], 2),
        "p90_ms": round(fixed["p90_ms"], 2),
        "p99_ms": round(fixed["p99_ms"], 2),
        "p99_front_queue_ms": round(fixed["p99_queue_ms"], 2),
        "p99_worker_ms": round(fixed["p99_worker_ms"], 2),
        "errors": fixed["errors"],
        "requests": fixed["requests"],
        "max_rps_at_p99_100ms": max_rps,
        "busiest_worker_cpu_share": round(busiest_share, 3),
        "front_cpu_ms_per_request": round(front_cpu_ms, 3),
        "sequential_http_p50_ms": round(p50_http, 2),
        "sequential_http_p99_ms": round(percentile(seq, 99), 2),
        "inproc_p50_ms": round(p50_in, 2),
        "inproc_p99_ms": round(percentile(inproc, 99), 2),
        **{k: round(v, 2) for k, v in stage_p50.items()},
        "paired_inproc_p50_ms": round(percentile(pair_in, 50), 2),
        "paired_http_p50_ms": round(percentile(pair_http, 50), 2),
        "overhead_ratio": round((percentile(pair_http, 50) - percentile(pair_in, 50))
                                / percentile(pair_in, 50), 3),
        "overhead_ratio_unpaired": round((p50_http - p50_in) / p50_in, 3),
        "server_cpu_ms_per_request": round(server_cpu_ms, 2),
        "overhead_ratio_cpu": round(
            (server_cpu_ms - stage_p50["inproc_cpu_ms_per_request"])
            / stage_p50["inproc_cpu_ms_per_request"], 3),
        "load_avg_1m_start": round(load_start, 2),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "nproc": float(os.cpu_count() or 0),
        "slow_reader_rss_growth_mb": round(slow_reader_mb, 1),
        "acked_events_after_kill9": float(len(acked)),
        "acked_events_lost_after_kill9": lost_after_kill9,
    }
    # uvicorn alone (no haproxy installed) has no queue time nor kill -9 probe: left out
    figures = {k: v for k, v in figures.items() if not (isinstance(v, float) and v != v)}
    print(f"\nserve benchmark on {platform.node()} ({os.cpu_count()} cores), "
          f"{n_items_served:,} items")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value:,}" if isinstance(value, float) else
              f"  {key:<{width}}  {value}")
    print(f"  HTTP + orchestration overhead: {figures['overhead_ratio']:.1%} of in-process time "
          f"(target <= 25%); in CPU time {figures['overhead_ratio_cpu']:.1%}")
    print(f"  in-process CPU per request {figures['inproc_cpu_ms_per_request']} ms; through the "
          f"reference paths {figures['inproc_reference_cpu_ms_per_request']} ms (same results)")
    print(f"  load average {figures['load_avg_1m_start']} at start, "
          f"{figures['load_avg_1m_end']} at end, {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
