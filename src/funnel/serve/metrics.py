"""Prometheus metrics through ``prometheus_client``: counters and latency histograms per route
and stage, and how many workers are up.

Behind ``funnel serve --workers N`` each worker writes its samples to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` (the client's multiprocess mode, chosen when the variable is set
before the worker starts), and ``GET /metrics`` on any worker sums every worker's files: the
counts of a worker that died stay in the totals, its ``funnel_workers_up`` does not (the
supervisor calls ``mark_process_dead``). Without the variable (one worker, tests) each
:class:`Metrics` keeps its samples in its own registry.

Call sites pass label sets through :func:`labels_key`, cached, so a request renders none.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from functools import lru_cache

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LabelKey = tuple[tuple[str, str], ...]

disable_created_metrics()  # no ``*_created`` series: they differ per worker and sum to nonsense


@lru_cache(maxsize=10_000)  # label values come from routes and stages, not from users
def _key(items: LabelKey) -> LabelKey:
    return tuple(sorted(items))


def labels_key(labels: dict[str, str]) -> LabelKey:
    """The label set as sorted ``(name, value)`` pairs, the form :meth:`Metrics.inc_key` and
    :meth:`Metrics.observe_many_ms` take (label names are declared in sorted order)."""
    return _key(tuple((k, str(v)) for k, v in labels.items()))


class Metrics:
    """The app's metric families, created on first use with the label names of that use."""

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        self._registry = CollectorRegistry(auto_describe=False)
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._lock = threading.Lock()
        self._up = Gauge("funnel_workers_up", "Server workers serving requests",
                         registry=self._registry, multiprocess_mode="livesum")

    def set_up(self, up: bool) -> None:
        """This worker serves (models loaded) or no longer does (shutting down)."""
        self._up.set(1 if up else 0)

    def _counter(self, name: str, help_text: str, names: tuple[str, ...]) -> Counter:
        family = self._counters.get(name)
        if family is None:
            with self._lock:
                family = self._counters.get(name)
                if family is None:
                    family = Counter(name, help_text or name, names, registry=self._registry)
                    self._counters[name] = family
        return family

    def _histogram(self, name: str, help_text: str, names: tuple[str, ...]) -> Histogram:
        family = self._histograms.get(name)
        if family is None:
            with self._lock:
                family = self._histograms.get(name)
                if family is None:
                    family = Histogram(name, help_text or name, names, registry=self._registry,
                                       buckets=BUCKETS_MS)
                    self._histograms[name] = family
        return family

    def inc(self, name: str, labels: dict[str, str] | None = None, value: float = 1.0,
            help_text: str = "") -> None:
        self.inc_key(name, labels_key(labels or {}), value, help_text)

    def inc_key(self, name: str, labels: LabelKey, value: float = 1.0,
                help_text: str = "") -> None:
        """:meth:`inc` with the label set from :func:`labels_key`."""
        family = self._counter(name, help_text, tuple(k for k, _ in labels))
        (family.labels(*(v for _, v in labels)) if labels else family).inc(value)

    def observe_ms(self, name: str, ms: float, labels: dict[str, str] | None = None,
                   help_text: str = "") -> None:
        self.observe_many_ms(name, ((labels_key(labels or {}), ms),), help_text)

    def observe_many_ms(self, name: str, samples: Iterable[tuple[LabelKey, float]],
                        help_text: str = "") -> None:
        """Record ``(labels_key(...), ms)`` samples of histogram ``name``."""
        for labels, ms in samples:
            family = self._histogram(name, help_text, tuple(k for k, _ in labels))
            (family.labels(*(v for _, v in labels)) if labels else family).observe(ms)

    def render(self) -> str:
        """The text exposition: this process's samples, or every worker's summed."""
        if self.multiprocess_dir is None:
            return generate_latest(self._registry).decode()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry).decode()


def mark_worker_dead(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges from the sums in ``directory`` (its counters stay:
    those requests happened)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)
