"""Durable event intake: every accepted event is fsync'ed to a JSON Lines spool before the reply.

The server never holds the DuckDB store open (a CLI may be writing to it). A background flush
moves closed spool segments into the store through the normal, idempotent ingest, and deletes a
segment only after its transaction committed. A crash loses nothing: segments are re-ingested
on the next flush, and event ids make that idempotent.

A writer holds an exclusive ``flock`` on its open segment for as long as it lives. The kernel
drops that lock when the process dies (even by ``kill -9``), so any ``.open`` segment whose lock
can be taken belongs to a dead writer: :meth:`EventSpool.recover` closes it (dropping a last
line the crash cut short, which was never acknowledged) and it is ingested like any other.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EventSpool:
    def __init__(self, directory: Path, *, max_lines: int = 50_000) -> None:
        self.directory = directory
        self.max_lines = max_lines
        self._lock = threading.Lock()
        self._fh: Any = None
        self._path: Path | None = None
        self._lines = 0
        directory.mkdir(parents=True, exist_ok=True)

    def _open(self) -> None:
        name = f"events-{os.getpid()}-{time.time_ns()}.jsonl.open"
        self._path = self.directory / name
        self._fh = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 - long-lived handle
        fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live
        self._lines = 0

    def append(self, events: list[dict[str, Any]]) -> None:
        """Write and fsync ``events``; returns only once they are on disk."""
        payload = "".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in events)
        with self._lock:
            if self._fh is None:
                self._open()
            self._fh.write(payload)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._lines += len(events)
            if self._lines >= self.max_lines:
                self._close_segment()

    def _close_segment(self) -> None:
        if self._fh is None or self._path is None:
            return
        self._fh.close()
        os.replace(self._path, self._path.with_suffix(""))  # drop '.open': ready to ingest
        self._fh, self._path = None, None

    def rotate(self) -> None:
        with self._lock:
            self._close_segment()

    def ready_segments(self) -> list[Path]:
        return sorted(self.directory.glob("events-*.jsonl"))

    def recover(self) -> int:
        """Close every open segment whose writer has died; returns how many were recovered."""
        recovered = 0
        for path in sorted(self.directory.glob("events-*.jsonl.open")):
            if path == self._path:
                continue
            try:
                fh = open(path, "r+b")  # noqa: SIM115 - closed below
            except FileNotFoundError:  # closed by its (live) writer meanwhile
                continue
            with fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a live writer holds it
                    continue
                data = fh.read()
                whole = data.rfind(b"\n") + 1  # a cut-off last line was never acknowledged
                if whole < len(data):
                    fh.truncate(whole)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(path, path.with_suffix(""))
                recovered += 1
        if recovered:
            log.warning("spool: recovered %d segment(s) of a writer that died", recovered)
        return recovered

    def flush_to_store(self, workspace: Any) -> int:
        """Ingest closed segments into the event store; returns events stored."""
        from funnel.data.ingest import ingest_file

        self.rotate()
        self.recover()
        stored = 0
        for segment in self.ready_segments():
            try:
                stored += ingest_file(workspace, segment, fmt="jsonl", kind="events").stored
            except Exception as err:  # store busy (another writer) or similar: retry later
                log.warning("spool flush of %s deferred: %s", segment.name, err)
                break
            segment.unlink()
        return stored

    def close(self) -> None:
        self.rotate()
