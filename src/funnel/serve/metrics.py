"""Prometheus text-format metrics: request counters and latency histograms per route and stage.

Small on purpose (no client library): a lock-protected dict of counters and fixed-bucket
histograms, rendered in the text exposition format 0.0.4. Recording is on every request's path,
so it does the least work there: label sets are rendered once (:func:`labels_key`), a sample
lands in one bucket found by bisection (the cumulative ``le`` counts are summed when rendered),
and :meth:`Metrics.observe_many_ms` records a request's stages under one lock.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_OVER = len(BUCKETS_MS)
"""Index of the count of samples above the last bound (or NaN): in ``+Inf`` only."""


def labels_key(labels: dict[str, str]) -> str:
    """The rendered label set ``{k="v",...}`` (sorted), cached: callers on a request's path pass
    the result to :meth:`Metrics.observe_many_ms` instead of formatting labels per sample."""
    if not labels:
        return ""
    key = tuple(labels.items())
    cached = _LABELS.get(key)
    if cached is None:
        cached = _render_labels(labels)
        if len(_LABELS) < 10_000:  # bounded: label values come from routes, not from users
            _LABELS[key] = cached
    return cached


_LABELS: dict[tuple[tuple[str, str], ...], str] = {}
"""Rendered label sets (a handful of routes x stages), so a request formats none."""


def _render_labels(labels: dict[str, str]) -> str:
    inner = ",".join(
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], float] = defaultdict(float)
        # per histogram: samples per bucket (not cumulative), the +Inf-only count, count, sum
        self._hist: dict[tuple[str, str], list[float]] = {}
        self._help: dict[str, tuple[str, str]] = {}

    def inc(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        value: float = 1.0,
        help_text: str = "",
    ) -> None:
        self.inc_key(name, labels_key(labels or {}), value, help_text)

    def inc_key(self, name: str, labels: str, value: float = 1.0, help_text: str = "") -> None:
        """:meth:`inc` with the label set already rendered by :func:`labels_key`."""
        with self._lock:
            if name not in self._help:
                self._help[name] = ("counter", help_text)
            self._counters[(name, labels)] += value

    def observe_ms(
        self, name: str, ms: float, labels: dict[str, str] | None = None, help_text: str = ""
    ) -> None:
        self.observe_many_ms(name, ((labels_key(labels or {}), ms),), help_text)

    def observe_many_ms(
        self, name: str, samples: Iterable[tuple[str, float]], help_text: str = ""
    ) -> None:
        """Record ``(labels_key(...), ms)`` samples of histogram ``name`` under one lock."""
        with self._lock:
            if name not in self._help:
                self._help[name] = ("histogram", help_text)
            for labels, ms in samples:
                h = self._hist.get((name, labels))
                if h is None:
                    h = self._hist[(name, labels)] = [0.0] * (_OVER + 3)
                h[bisect_left(BUCKETS_MS, ms) if ms <= BUCKETS_MS[-1] else _OVER] += 1
                h[-2] += 1  # count (= +Inf bucket)
                h[-1] += ms  # sum

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_text) in sorted(self._help.items()):
                lines.append(f"# HELP {name} {help_text or name}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    for (n, lab), v in sorted(self._counters.items()):
                        if n == name:
                            lines.append(f"{n}{lab} {v:g}")
                else:
                    for (n, lab), h in sorted(self._hist.items()):
                        if n != name:
                            continue
                        base = lab[1:-1] + "," if lab else ""
                        cumulative = 0.0
                        for i, b in enumerate(BUCKETS_MS):
                            cumulative += h[i]
                            lines.append(f'{n}_bucket{{{base}le="{b}"}} {cumulative:g}')
                        lines.append(f'{n}_bucket{{{base}le="+Inf"}} {h[-2]:g}')
                        lines.append(f"{n}_count{lab} {h[-2]:g}")
                        lines.append(f"{n}_sum{lab} {h[-1]:g}")
        return "\n".join(lines) + "\n"
