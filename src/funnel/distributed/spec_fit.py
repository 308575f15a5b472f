"""Fit feature specs from streamed batches: per-process partial statistics that merge.

Why: ``FeatureSet.fit`` needs every row in one process. Here each process makes one pass over
its own shard and keeps only what each spec's state is a function of; the processes exchange
those partials (``all_gather_object``) and every process merges the same list in the same
order, so every process builds the same feature set, hence the same network. The merged
states equal ``FeatureSet.fit`` on all the rows:

- ``vocab`` / ``vocab_sequence``: value counts, summed (exact; the order rule is ``fit``'s);
- ``numeric``: count, mean and squared deviations, merged pairwise (Chan et al.; equal to
  ``fit``'s mean and std up to float rounding);
- ``history``: each item's attribute at its last row by global row index, the items in the
  order of their first rows (exact: ``HistorySpec.fit`` keeps the last value it meets);
- ``hash`` / ``cross`` / ``sequence``: no state (their checks run on every batch);
- ``bucket``: quantiles of the column's finite values, exact up to ``QUANTILE_SAMPLE`` rows
  in all; above that, of a seeded Bernoulli sample of about that many rows (approximate edges).

Memory per process: the vocabularies (as the model holds anyway), the history items and the
bucket sample, never the rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funnel.exceptions import ConfigError
from funnel.features.specs import (
    MISSING,
    BucketSpec,
    FeatureSet,
    HistorySpec,
    NumericSpec,
    Spec,
    VocabSequenceSpec,
    VocabSpec,
    _as_str,
    _list_of,
)

QUANTILE_SAMPLE = 1_000_000
"""Finite values kept per bucket spec over all processes (8 MB); exact quantiles below it."""


@dataclass
class Partial:
    """One spec's statistics over some rows; ``merge`` of a list gives the fitted state."""

    counts: Counter[str] = field(default_factory=Counter)
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    sample: list[np.ndarray] = field(default_factory=list)
    seen: dict[str, tuple[int, int, Any]] = field(default_factory=dict)
    """history: item -> (global rows of its first and last occurrence, value at the last)."""


def _moments(p: Partial, x: np.ndarray) -> None:
    """Add finite values ``x`` to the running count/mean/M2 (Chan's pairwise update)."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return
    n_b, mean_b = x.size, float(x.mean())
    m2_b = float(((x - mean_b) ** 2).sum())
    n = p.n + n_b
    delta = mean_b - p.mean
    p.mean += delta * n_b / n
    p.m2 += m2_b + delta * delta * p.n * n_b / n
    p.n = n


def update(spec: Spec, p: Partial, columns: Mapping[str, np.ndarray], start: int,
           keep: np.ndarray) -> None:
    """Add one batch (rows ``start, start + 1, ...`` globally) to ``p``; ``keep`` is the
    bucket sample's row mask."""
    if isinstance(spec, NumericSpec):
        _moments(p, spec._raw(columns))
    elif isinstance(spec, BucketSpec):
        x = spec._raw(columns)[keep]
        p.sample.append(x[np.isfinite(x)])
    elif isinstance(spec, VocabSpec):
        values = _as_str(np.asarray(columns[spec.sources[0]]))
        p.counts.update(values[values != MISSING].tolist())
    elif isinstance(spec, VocabSequenceSpec):
        if spec.key:
            values = _as_str(np.asarray(columns[spec.key]))
            p.counts.update(values[values != MISSING].tolist())
        else:
            p.counts.update(t for v in columns[spec.sources[0]].tolist() for t in _list_of(v))
    elif isinstance(spec, HistorySpec):
        keys = _as_str(np.asarray(columns[spec.key]))
        uniq, firsts = np.unique(keys, return_index=True)
        lasts = len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]
        raw = np.asarray(columns[spec.attribute])[lasts].tolist()  # numpy scalars -> Python
        for k, a, b, v in zip(uniq.tolist(), firsts.tolist(), lasts.tolist(), raw, strict=True):
            old = p.seen.get(k)
            p.seen[k] = (start + a if old is None else min(old[0], start + a),
                         *((start + b, v) if old is None or start + b > old[1] else old[1:]))
    elif spec.type not in ("hash", "cross", "sequence"):
        raise ConfigError(f"feature '{spec.name}' (type '{spec.type}'): no streaming fit; "
                          "train it in one process (ranker.fit)")


def merge(spec: Spec, parts: Sequence[Partial]) -> dict[str, Any]:
    """The fitted state of ``spec`` from every process's partial (same order everywhere)."""
    if isinstance(spec, NumericSpec):
        total = Partial()
        for q in parts:
            if q.n:
                n = total.n + q.n
                delta = q.mean - total.mean
                total.mean += delta * q.n / n
                total.m2 += q.m2 + delta * delta * total.n * q.n / n
                total.n = n
        std = float(np.sqrt(total.m2 / total.n)) if total.n else 1.0
        return {"mean": total.mean if total.n else 0.0, "std": std if std > 1e-12 else 1.0}
    if isinstance(spec, BucketSpec):
        values = np.concatenate([x for q in parts for x in q.sample] or [np.zeros(0)])
        return spec.fit({spec.sources[0]: values})
    if isinstance(spec, VocabSpec | VocabSequenceSpec):
        counts: Counter[str] = Counter()
        for q in parts:
            counts.update(q.counts)
        order = sorted(counts.items(), key=lambda t: (-t[1], t[0]))
        vocab = [v for v, c in order if c >= spec.min_count]
        return {"vocab": vocab[: spec.max_size] if spec.max_size else vocab}
    if isinstance(spec, HistorySpec):
        seen: dict[str, tuple[int, int, Any]] = {}
        for q in parts:
            for k, (a, b, value) in q.seen.items():
                old = seen.get(k)
                seen[k] = (a if old is None else min(old[0], a),
                           *((b, value) if old is None or b > old[1] else old[1:]))
        items = sorted(seen, key=lambda k: seen[k][0])  # fit's order: first occurrence
        raw = np.empty(len(items), dtype=object)
        raw[:] = [seen[k][2] for k in items]
        keys = np.empty(len(items), dtype=object)
        keys[:] = items
        return spec.fit({spec.column: keys, spec.key: keys, spec.attribute: raw})
    return {}


def partial_fit(
    specs: Sequence[Spec], batches: Iterable[tuple[int, Mapping[str, np.ndarray]]],
    sample_rate: float, seed: int = 0,
) -> list[Partial]:
    """One pass over ``(global first row, columns)`` batches: a partial per spec.

    The bucket sample keeps each row with probability ``sample_rate`` (1: all), drawn from
    the row's global index, so the sample does not depend on how the rows were split.
    """
    parts = [Partial() for _ in specs]
    first_batch = True
    for start, columns in batches:
        n = len(next(iter(columns.values()))) if columns else 0
        if first_batch:  # a spec's own checks (bad bits, missing column) say what is wrong
            for spec in specs:
                if spec.type in ("hash", "cross", "sequence", "bucket"):
                    spec.fit({k: v[:1] for k, v in columns.items()})
                else:
                    for c in (*spec.sources, *_extra_sources(spec)):
                        if c not in columns:
                            raise KeyError(f"feature '{spec.name}' needs column '{c}', which is "
                                           f"missing; got columns {sorted(columns)}")
            first_batch = False
        keep = np.ones(n, dtype=bool)
        if sample_rate < 1.0:
            keep = _row_uniform(start, n, seed) < sample_rate
        for spec, p in zip(specs, parts, strict=True):
            update(spec, p, columns, start, keep)
    return parts


def fit_columns(specs: Sequence[Spec]) -> list[str]:
    """Every column fitting ``specs`` reads (a history spec's ``key`` and ``attribute`` too,
    which encoding does not read)."""
    return sorted({c for s in specs for c in (*s.sources, *_extra_sources(s))})


def _extra_sources(spec: Spec) -> tuple[str, ...]:
    if isinstance(spec, HistorySpec):
        return (spec.key, spec.attribute)
    if isinstance(spec, VocabSequenceSpec) and spec.key:
        return (spec.key,)
    return ()


def _row_uniform(start: int, n: int, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per global row index (splitmix64), the same in any process."""
    x = (np.arange(start, start + n, dtype=np.uint64) + np.uint64(seed)) * np.uint64(
        0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def merged_feature_set(specs: Sequence[Spec], gathered: Sequence[Sequence[Partial]]
                       ) -> FeatureSet:
    """The fitted :class:`FeatureSet` from every process's partials (process order)."""
    states = [merge(spec, [g[i] for g in gathered]) for i, spec in enumerate(specs)]
    return FeatureSet(list(specs), states_=states)
