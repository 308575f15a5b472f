"""Prometheus text-format metrics: request counters and latency histograms per route and stage.

Small on purpose (no client library): a lock-protected dict of counters and fixed-bucket
histograms, rendered in the text exposition format 0.0.4.
"""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def _labels(labels: dict[str, str]) -> str:
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
        self._hist: dict[tuple[str, str], list[float]] = {}
        self._help: dict[str, tuple[str, str]] = {}

    def inc(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        value: float = 1.0,
        help_text: str = "",
    ) -> None:
        key = (name, _labels(labels or {}))
        with self._lock:
            self._help.setdefault(name, ("counter", help_text))
            self._counters[key] += value

    def observe_ms(
        self, name: str, ms: float, labels: dict[str, str] | None = None, help_text: str = ""
    ) -> None:
        key = (name, _labels(labels or {}))
        with self._lock:
            self._help.setdefault(name, ("histogram", help_text))
            h = self._hist.setdefault(key, [0.0] * (len(BUCKETS_MS) + 2))
            for i, b in enumerate(BUCKETS_MS):
                if ms <= b:
                    h[i] += 1
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
                        for i, b in enumerate(BUCKETS_MS):
                            lines.append(f'{n}_bucket{{{base}le="{b}"}} {h[i]:g}')
                        lines.append(f'{n}_bucket{{{base}le="+Inf"}} {h[-2]:g}')
                        lines.append(f"{n}_count{lab} {h[-2]:g}")
                        lines.append(f"{n}_sum{lab} {h[-1]:g}")
        return "\n".join(lines) + "\n"
