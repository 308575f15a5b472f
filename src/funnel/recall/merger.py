"""The merger: ask every source, keep each one's quota, dedupe, record provenance.

Sources that may block (a remote index, a disk read) run on a thread pool with one deadline for
the whole request; sources named ``inline`` (in-memory lookups that take well under a
millisecond) run on the request's own thread, since handing them to a pool costs more than
they do. A source that raises or misses the deadline is skipped with a logged warning and
reported in ``MergedCandidates.skipped``; the request still succeeds with what the others found
(graceful degradation). A pooled source that hangs holds at most ``max_in_flight`` pool
threads: while that many of its calls are unfinished, later requests skip it at once instead
of queueing behind it. Candidates are
ordered by reciprocal-rank fusion over the sources that found them (Cormack et al., 2009), so no
source's raw score scale dominates another's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any, overload

import numpy as np
import pandas as pd

from funnel.recall.base import Candidates, CandidateSource, RecallRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergedCandidates:
    """The merged list, best first, with where every candidate came from."""

    item_ids: np.ndarray  # (n,) object
    scores: np.ndarray  # (n,) float32, fused score
    provenance: Sequence[dict[str, float]]  # per candidate: source name -> that source's score
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # source name -> reason
    rows: np.ndarray | None = None
    """(n,) int64 catalog row of each candidate, when the merger was given the catalog's keys
    (:meth:`Merger.use_catalog`) and every candidate is in it."""

    def __len__(self) -> int:
        return len(self.item_ids)


class Provenance(Sequence[dict[str, float]]):
    """Per merged candidate, source name -> that source's score, as a list of dicts would hold
    it (sources in merge order) - built when read: a server reads a few of its ~1000 (the
    search gate's doubtful candidates, debug output), so it keeps arrays, not dicts."""

    def __init__(
        self, names: Sequence[str], pos: np.ndarray, src: np.ndarray, score: np.ndarray, n: int
    ) -> None:
        kept = pos >= 0
        order = np.argsort(pos[kept], kind="stable")  # by candidate, then in merge order
        at = pos[kept][order]
        self._names = list(names)
        self._src = src[kept][order]
        self._score = score[kept][order]
        self._at = at
        self._bounds = np.searchsorted(at, np.arange(n + 1)).tolist()
        self._n = n

    def found_by(self, name: str) -> np.ndarray:
        """``(n,) bool``: whether source ``name`` found each candidate (``name in self[i]``)."""
        out = np.zeros(self._n, dtype=bool)
        if name in self._names:
            out[self._at[self._src == self._names.index(name)]] = True
        return out

    def scores_of(self, name: str) -> np.ndarray:
        """``(n,) float64``: source ``name``'s score of each candidate, NaN where it did not
        find it (``self[i].get(name, nan)``, without building the dicts)."""
        out = np.full(self._n, np.nan)
        if name in self._names:
            mine = self._src == self._names.index(name)
            out[self._at[mine]] = self._score[mine]
        return out

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, float]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, float]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, float] | list[dict[str, float]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        j = int(i) + self._n if i < 0 else int(i)
        if not 0 <= j < self._n:
            raise IndexError(f"provenance index {i} out of range for {self._n} candidates")
        a, b = self._bounds[j], self._bounds[j + 1]
        names = self._names
        return {names[s]: v for s, v in zip(self._src[a:b].tolist(),
                                            self._score[a:b].tolist(), strict=True)}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable like the list it compares equal to

    def __repr__(self) -> str:
        return repr(list(self))


class Merger:
    """Run candidate sources with quotas, dedupe, provenance, timing and timeouts.

    Parameters
    ----------
    sources : sequence of CandidateSource
        Each with a unique ``name``.
    quotas : mapping name -> int, optional
        Most candidates taken from each source (default: ``default_quota``).
    default_quota : int
    timeout_s : float
        Deadline for all sources together; late sources are skipped.
    rrf_k : float
        Reciprocal-rank-fusion constant: a candidate scores sum(w / (rrf_k + rank)).
    weights : mapping name -> float, optional
        Each source's ``w`` in that sum (default 1: plain RRF). A source a request's own
        user stands behind (the user's earlier items) can outweigh the crowd's sources.
    max_workers : int
        Pool threads for the sources that are not inline.
    inline : collection of str, optional
        Sources run on the caller's thread: they cannot be cut off at the deadline, so name
        only in-memory sources that cannot block (default: none, every source is pooled).
    max_in_flight : int
        Unfinished calls a pooled source may have before requests skip it (a hung source).

    Example
    -------
    >>> class Fixed:
    ...     name = "fixed"
    ...     def candidates(self, request):
    ...         return Candidates(np.array(["a", "b"], dtype=object), np.ones(2, np.float32))
    >>> Merger([Fixed()]).recall(RecallRequest(k=1)).item_ids.tolist()
    ['a']
    """

    def __init__(
        self,
        sources: Sequence[CandidateSource],
        *,
        quotas: Mapping[str, int] | None = None,
        default_quota: int = 300,
        timeout_s: float = 0.2,
        rrf_k: float = 60.0,
        max_workers: int = 8,
        inline: Collection[str] | None = None,
        max_in_flight: int = 2,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        bad = {n: w for n, w in (weights or {}).items()
               if not isinstance(w, int | float) or not w > 0}
        if bad:
            raise ValueError(f"'weights' must be positive numbers; got {bad}")
        self.sources = sources
        self.weights = dict(weights or {})
        self.quotas = quotas
        self.default_quota = default_quota
        self.timeout_s = timeout_s
        self.rrf_k = rrf_k
        self.max_workers = max_workers
        self.inline = inline
        self.max_in_flight = max_in_flight
        self._pool: ThreadPoolExecutor | None = None
        self._busy: dict[str, int] = {}  # pooled source name -> unfinished calls
        self._lock = threading.Lock()
        self._checked: tuple[Any, ...] | None = None
        self._catalog: tuple[Any, np.ndarray] | None = None

    def use_catalog(self, rows: Any, id_rank: np.ndarray) -> None:
        """Dedupe and break score ties through the catalog: ``rows(ids)`` gives each id's row
        (-1 if absent) and ``id_rank[row]`` the rank of that row's id in ``sorted`` order.
        Ties then compare integers, not strings, and the merged list carries its rows, which
        a server needs next anyway. The order is the same as without (lists with ids the
        catalog lacks take the path without)."""
        id_rank = np.asarray(id_rank)
        if id_rank.ndim != 1 or id_rank.dtype.kind not in "iu":
            raise ValueError(
                f"'id_rank' must be a 1-D integer array (one rank per catalog row); got shape "
                f"{id_rank.shape}, dtype {id_rank.dtype}"
            )
        self._catalog = (rows, id_rank)

    def _check(self) -> None:
        # once per parameter set, not per request: runtime Protocol checks cost ~0.1 ms each
        key = (tuple(map(id, self.sources)), tuple(sorted((self.quotas or {}).items())),
               self.timeout_s, tuple(self.inline or ()), self.max_in_flight)
        if key == self._checked:
            return
        names = [getattr(s, "name", None) for s in self.sources]
        for source, name in zip(self.sources, names, strict=True):
            if not isinstance(source, CandidateSource) or not isinstance(name, str):
                raise TypeError(
                    f"every source must implement CandidateSource (a str 'name' and "
                    f"'candidates(request)'); got {type(source).__name__}"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique; got {names}")
        unknown = sorted(set(self.quotas or {}) - set(names))
        if unknown:
            raise ValueError(f"quotas name unknown source(s) {unknown}; sources are {names}")
        if not self.timeout_s > 0:
            raise ValueError(f"The 'timeout_s' parameter must be > 0. Got {self.timeout_s!r}.")
        stray = sorted(set(self.inline or ()) - set(names))
        if stray:
            raise ValueError(f"inline names unknown source(s) {stray}; sources are {names}")
        if not (isinstance(self.max_in_flight, int) and self.max_in_flight >= 1):
            raise ValueError(
                f"The 'max_in_flight' parameter must be an int >= 1. Got {self.max_in_flight!r}."
            )
        self._checked = key

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            pooled = len(self.sources) - len(set(self.inline or ()))
            # enough threads that sources stuck at their in-flight cap cannot starve the rest
            workers = max(self.max_workers, self.max_in_flight * pooled + 1)
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="funnel-recall")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @staticmethod
    def _timed(source: CandidateSource, request: RecallRequest) -> tuple[Candidates, float]:
        start = time.perf_counter()
        out = source.candidates(request)
        return out, (time.perf_counter() - start) * 1000.0

    def _pooled(self, source: CandidateSource, request: RecallRequest) -> tuple[Candidates, float]:
        try:
            return self._timed(source, request)
        finally:
            with self._lock:
                self._busy[source.name] -= 1

    def recall(self, request: RecallRequest) -> MergedCandidates:
        """Up to ``request.k`` merged candidates; never raises because one source failed."""
        self._check()
        deadline = time.perf_counter() + self.timeout_s
        inline = set(self.inline or ())
        results: dict[str, Candidates] = {}
        timings: dict[str, float] = {}
        skipped: dict[str, str] = {}

        def skip(name: str, reason: str) -> None:
            skipped[name] = reason
            log.warning("recall source %r skipped: %s", name, reason)

        subs = {
            s.name: replace(  # the full quota: fusion needs depth
                request, k=max(1, (self.quotas or {}).get(s.name, self.default_quota))
            )
            for s in self.sources
        }
        futures: dict[str, Future[tuple[Candidates, float]]] = {}
        for source in self.sources:  # blocking sources first, so they overlap the inline ones
            if source.name in inline:
                continue
            with self._lock:
                busy = self._busy.get(source.name, 0)
                if busy < self.max_in_flight:
                    self._busy[source.name] = busy + 1
            if busy >= self.max_in_flight:
                skip(source.name, f"busy: {busy} earlier calls still running")
                continue
            futures[source.name] = self._executor().submit(self._pooled, source, subs[source.name])
        for source in self.sources:
            if source.name not in inline:
                continue
            try:
                results[source.name], timings[source.name] = self._timed(source, subs[source.name])
            except Exception as err:  # a broken source must never fail the request
                skip(source.name, f"{type(err).__name__}: {err}")
        for name, fut in futures.items():
            try:
                out, ms = fut.result(timeout=max(0.0, deadline - time.perf_counter()))
            except FutureTimeout:
                if fut.cancel():  # never started: _pooled will not release its slot
                    with self._lock:
                        self._busy[name] -= 1
                skip(name, f"timed out after {self.timeout_s * 1000:.0f} ms")
                continue
            except Exception as err:  # a broken source must never fail the request
                skip(name, f"{type(err).__name__}: {err}")
                continue
            results[name] = out
            timings[name] = ms
        # fuse in the sources' own order, whichever finished first (the same sums every time)
        ordered = {s.name: results[s.name] for s in self.sources if s.name in results}
        return self._fuse(ordered, request.k, timings, skipped)

    def _fuse(
        self,
        results: Mapping[str, Candidates],
        k: int,
        timings: dict[str, float],
        skipped: dict[str, str],
    ) -> MergedCandidates:
        names: list[np.ndarray] = []
        ids: list[np.ndarray] = []
        ranks: list[np.ndarray] = []
        gains: list[np.ndarray] = []
        raw: list[np.ndarray] = []
        for name, cands in results.items():
            quota = (self.quotas or {}).get(name, self.default_quota)
            got = np.asarray(cands.item_ids[:quota], dtype=object)
            names.append(np.full(len(got), len(names), dtype=np.int64))
            ids.append(got)
            ranks.append(np.arange(len(got), dtype=np.float64))
            gains.append(np.full(len(got), float(self.weights.get(name, 1.0))))
            raw.append(np.asarray(cands.scores[:quota], dtype=np.float64))
        if not ids or not sum(len(i) for i in ids):
            return MergedCandidates(
                np.empty(0, dtype=object), np.empty(0, np.float32), [], timings, skipped
            )
        all_ids = np.concatenate(ids)
        rows = None
        if self._catalog is not None:
            rows = self._catalog[0](all_ids.tolist())
            if len(rows) and rows.min() < 0:
                rows = None
        if rows is not None:  # distinct ids are distinct rows (numbered in another order)
            uniq_rows, first, codes = np.unique(rows, return_index=True, return_inverse=True)
            uniques = all_ids[first]
        else:
            codes, uniques = pd.factorize(all_ids)
        # the same float sums as adding w / (rrf_k + rank + 1) source by source, in order
        fused = np.zeros(len(uniques), dtype=np.float64)
        np.add.at(fused, codes, np.concatenate(gains) / (self.rrf_k + np.concatenate(ranks) + 1))
        if rows is not None and self._catalog is not None:  # ties by id, as _order breaks them
            best = np.lexsort((self._catalog[1][uniq_rows], -fused))[:k]
        else:
            best = _order(fused, uniques)[:k]
        # provenance of the kept candidates only: source name -> that source's score
        where = np.full(len(uniques), -1, dtype=np.int64)
        where[best] = np.arange(len(best))
        prov = Provenance(list(results), where[codes], np.concatenate(names),
                          np.concatenate(raw), len(best))
        return MergedCandidates(
            item_ids=np.asarray(uniques[best], dtype=object),
            scores=fused[best].astype(np.float32),
            provenance=prov,
            timings_ms=timings,
            skipped=skipped,
            rows=None if rows is None else uniq_rows[best],
        )


def _order(fused: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions by descending fused score, ties by ascending id (as ``sorted`` orders them)."""
    values = ids.tolist()
    if all(type(v) is str for v in values):
        return np.lexsort((np.asarray(values, dtype=str), -fused))
    return np.asarray(
        sorted(range(len(values)), key=lambda i: (-fused[i], values[i])), dtype=np.int64
    )
