"""The merger: ask every source in parallel, keep each one's quota, dedupe, record provenance.

Sources run on a thread pool with one deadline for the whole request. A source that raises or
misses the deadline is skipped with a logged warning and reported in ``MergedCandidates.skipped``;
the request still succeeds with what the others found (graceful degradation). Candidates are
ordered by reciprocal-rank fusion over the sources that found them (Cormack et al., 2009), so no
source's raw score scale dominates another's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace

import numpy as np

from funnel.recall.base import Candidates, CandidateSource, RecallRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergedCandidates:
    """The merged list, best first, with where every candidate came from."""

    item_ids: np.ndarray  # (n,) object
    scores: np.ndarray  # (n,) float32, fused score
    provenance: list[dict[str, float]]  # per candidate: source name -> that source's score
    timings_ms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # source name -> reason

    def __len__(self) -> int:
        return len(self.item_ids)


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
        Reciprocal-rank-fusion constant: a candidate scores sum(1 / (rrf_k + rank)).

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
    ) -> None:
        self.sources = sources
        self.quotas = quotas
        self.default_quota = default_quota
        self.timeout_s = timeout_s
        self.rrf_k = rrf_k
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None

    def _check(self) -> None:
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

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.max_workers, thread_name_prefix="funnel-recall"
            )
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

    def recall(self, request: RecallRequest) -> MergedCandidates:
        """Up to ``request.k`` merged candidates; never raises because one source failed."""
        self._check()
        pool = self._executor()
        deadline = time.perf_counter() + self.timeout_s
        futures: dict[str, Future[tuple[Candidates, float]]] = {}
        for source in self.sources:
            quota = (self.quotas or {}).get(source.name, self.default_quota)
            sub = replace(request, k=max(1, quota))  # full quota: fusion needs depth
            futures[source.name] = pool.submit(self._timed, source, sub)
        results: dict[str, Candidates] = {}
        timings: dict[str, float] = {}
        skipped: dict[str, str] = {}
        for name, fut in futures.items():
            try:
                out, ms = fut.result(timeout=max(0.0, deadline - time.perf_counter()))
            except FutureTimeout:
                fut.cancel()
                skipped[name] = f"timed out after {self.timeout_s * 1000:.0f} ms"
                log.warning("recall source %r skipped: %s", name, skipped[name])
                continue
            except Exception as err:  # a broken source must never fail the request
                skipped[name] = f"{type(err).__name__}: {err}"
                log.warning("recall source %r skipped: %s", name, skipped[name])
                continue
            results[name] = out
            timings[name] = ms
        return self._fuse(results, request.k, timings, skipped)

    def _fuse(
        self,
        results: Mapping[str, Candidates],
        k: int,
        timings: dict[str, float],
        skipped: dict[str, str],
    ) -> MergedCandidates:
        fused: dict[str, float] = {}
        prov: dict[str, dict[str, float]] = {}
        for name, cands in results.items():
            quota = (self.quotas or {}).get(name, self.default_quota)
            for rank, (item, score) in enumerate(
                zip(cands.item_ids[:quota].tolist(), cands.scores[:quota].tolist(), strict=True)
            ):
                fused[item] = fused.get(item, 0.0) + 1.0 / (self.rrf_k + rank + 1)
                prov.setdefault(item, {})[name] = float(score)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return MergedCandidates(
            item_ids=np.array([b[0] for b in best], dtype=object),
            scores=np.array([b[1] for b in best], dtype=np.float32),
            provenance=[prov[b[0]] for b in best],
            timings_ms=timings,
            skipped=skipped,
        )
