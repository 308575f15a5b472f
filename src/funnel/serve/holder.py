"""Hot reload without dropping a request: requests take a reference, reload swaps it.

Handlers read ``holder.engine`` once per request and use that object to the end, so a swap
in the middle of a request cannot affect it. Loading happens off the request path, under a lock
so two reloads never race; the old engine is closed after a grace period.

A loaded engine is moved out of the garbage collector's sight (``gc.freeze``): at a million
items a full collection walks its ~360k long-lived objects for ~350 ms, a pause that would land
on whichever request triggered it. The models are read-only, so there is nothing to collect in
them; when an old engine retires its objects are unfrozen and collected once.
"""

from __future__ import annotations

import atexit
import gc
import logging
import threading
import time
from pathlib import Path

from funnel.engine.core import Engine, require_artifact

log = logging.getLogger(__name__)
atexit.register(gc.unfreeze)  # native objects left frozen at exit are reported as leaks


class EngineHolder:
    def __init__(self, workspace: Path, *, recall_k: int, rank_k: int, grace_s: float = 30.0):
        self.workspace = workspace
        self.recall_k = recall_k
        self.rank_k = rank_k
        self.grace_s = grace_s
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self.reloads = 0

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            self.reload()
            engine = self._engine
        assert engine is not None  # reload either set it or raised
        return engine

    def current_path(self) -> Path:
        return require_artifact(self.workspace)

    def reload(self, *, force: bool = False) -> tuple[str, str | None]:
        """Load ``artifacts/current``; returns (new version, previous version)."""
        with self._lock:
            path = self.current_path()
            old = self._engine
            if old is not None and old.path == path and not force:
                return old.version, old.version
            started = time.perf_counter()
            new = Engine.load(path, recall_k=self.recall_k, rank_k=self.rank_k)
            self._engine = new
            self.reloads += 1
            if old is None:  # start-up: drop the loader's garbage before freezing the rest
                gc.collect()
            gc.freeze()
            log.info("loaded %s in %.1f s", new.version, time.perf_counter() - started)
        if old is not None:
            timer = threading.Timer(self.grace_s, _retire, args=(old,))
            timer.daemon = True
            timer.start()
        return new.version, old.version if old is not None else None

    def close(self) -> None:
        """Give the engine back to the collector (at shutdown: native objects left frozen at
        exit are reported as leaks)."""
        gc.unfreeze()

    def changed(self) -> bool:
        engine = self._engine
        try:
            return engine is None or self.current_path() != engine.path
        except Exception:  # a half-written workspace must not kill the watcher
            return False


def _retire(engine: Engine) -> None:
    """Close an engine no request uses any more and let the collector reclaim its cycles."""
    engine.close()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
