"""What the session-based recommenders of :mod:`funnel.recall.session_rules` share.

Input checks, the item vocabulary (ids sorted, so a smaller code is a smaller id and ties
break by id for free), top-k with exclusions, ``.npz`` + ``config.json`` persistence without
pickle, and the :class:`~funnel.recall.base.CandidateSource` adapter that answers a recall
request from the user's recent items.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from funnel._checks import check_is_fitted, positive_int
from funnel.exceptions import ArtifactError
from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.persist import read_config, write_config


def check_sessions(
    sessions: Sequence[Sequence[str]], times: Sequence[float] | None
) -> tuple[list[Sequence[str]], np.ndarray | None]:
    """``sessions`` as a list of item-id lists and ``times`` as float64; ValueError otherwise."""
    if isinstance(sessions, str | bytes) or not isinstance(sessions, Sequence | np.ndarray):
        raise ValueError(
            f"The 'sessions' parameter must be a sequence of item-id sequences. "
            f"Got {type(sessions).__name__} instead."
        )
    out = list(sessions)
    for i, s in enumerate(out):
        if isinstance(s, str | bytes) or not isinstance(s, Sequence | np.ndarray):
            raise ValueError(
                f"The 'sessions' parameter must hold sequences of item ids; sessions[{i}] is "
                f"{type(s).__name__} {s!r:.60}."
            )
        for item in s:
            if not isinstance(item, str):
                raise ValueError(
                    f"The 'sessions' parameter must hold str item ids; sessions[{i}] holds "
                    f"{type(item).__name__} {item!r}."
                )
    if times is None:
        return out, None
    try:
        t = np.asarray(times, dtype=np.float64) if len(times) else np.empty(0)
    except (TypeError, ValueError):
        raise ValueError(
            f"The 'times' parameter must hold numbers (e.g. epoch seconds); got "
            f"{type(times[0]).__name__} {times[0]!r}."
        ) from None
    if t.shape != (len(out),) or not np.isfinite(t).all():
        raise ValueError(
            f"The 'times' parameter must hold one finite end time per session ({len(out)}); "
            f"got shape {t.shape}."
        )
    return out, t


def check_query(prefix: Sequence[str], k: int, exclude: Collection[str]) -> None:
    if isinstance(prefix, str | bytes) or not isinstance(prefix, Sequence | np.ndarray):
        raise ValueError(
            f"The 'prefix' parameter must be a sequence of item ids (most recent last). "
            f"Got {type(prefix).__name__} {prefix!r:.60} instead."
        )
    if not positive_int(k):
        raise ValueError(f"The 'k' parameter must be a positive int. Got {k!r} instead.")
    if isinstance(exclude, str | bytes):
        raise ValueError(
            f"The 'exclude' parameter must be a collection of item ids, not the str {exclude!r}."
        )


def encode(sessions: list[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(items, codes, offsets)``: sorted distinct ids, every click as a code, and session
    ``s`` as ``codes[offsets[s]:offsets[s + 1]]``."""
    lengths = np.fromiter((len(s) for s in sessions), dtype=np.int64, count=len(sessions))
    offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = [item for s in sessions for item in s]
    if not flat:
        return np.empty(0, dtype=str), np.empty(0, dtype=np.int64), offsets
    items, codes = np.unique(np.asarray(flat, dtype=str), return_inverse=True)
    return items, codes.astype(np.int64), offsets


def top_k(codes: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best by descending score, ties by ascending code (= item id)."""
    if len(codes) > 4 * k:  # partial selection first: only the k-th score's ties need sorting
        kth = -np.partition(-scores, k - 1)[k - 1]
        keep = np.flatnonzero(scores >= kth)
        order = np.lexsort((codes[keep], -scores[keep]))[:k]
        return keep[order]
    return np.lexsort((codes, -scores))[:k]


def exact_scale(steps: int) -> float:
    """lcm(1..steps) when small enough that ``scale / d`` sums stay exact integers in float64
    (so equal scores compare equal whatever the order of the sums), else 1."""
    scale = math.lcm(*range(1, steps + 1))
    return float(scale) if scale <= 2**28 else 1.0


class SessionRecommender:
    """``recommend(prefix, k)`` over a fitted item vocabulary, persistence and recall serving.

    Subclasses set ``name`` (their recall source name), ``_arrays`` (learned array attributes
    saved to ``arrays.npz``; sparse ones are saved as their CSR parts) and implement
    ``_scores(codes) -> (item codes, raw scores, divisor)`` for a prefix of known item codes:
    raw scores are ranked (exact sums, so equal scores tie exactly), then divided.
    """

    name: ClassVar[str]
    _arrays: ClassVar[tuple[str, ...]]
    _sparse: ClassVar[tuple[str, ...]] = ()
    items_: np.ndarray
    exclude_recent: bool

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments as set on ``self`` (scikit-learn's convention)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def _index(self) -> dict[str, int]:
        index: dict[str, int] | None = self.__dict__.get("_code")
        if index is None:
            index = {item: i for i, item in enumerate(self.items_.tolist())}
            self._code = index
        return index

    def _scores(self, codes: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
        raise NotImplementedError

    def recommend(
        self, prefix: Sequence[str], k: int, *, exclude: Collection[str] = ()
    ) -> tuple[list[str], list[float]]:
        """The ``k`` best next items after ``prefix`` (most recent item last), best first.

        Parameters
        ----------
        prefix : sequence of str
            The session so far; items unseen in training are ignored.
        k : int
            Most items returned.
        exclude : collection of str
            Items never returned (e.g. the ones already in the session).

        Returns
        -------
        (item_ids, scores) : tuple of lists
            Best first, ties broken by ascending item id; empty when no item of ``prefix``
            was seen in training.
        """
        check_is_fitted(self, "items_")
        check_query(prefix, k, exclude)
        index = self._index()
        codes = [index[i] for i in prefix if i in index]
        if not codes:
            return [], []
        cand, scores, divisor = self._scores(codes)
        if len(exclude):
            drop = [index[i] for i in exclude if i in index]
            if drop:
                keep = ~np.isin(cand, drop)
                cand, scores = cand[keep], scores[keep]
        best = top_k(cand, scores, k)
        return self.items_[cand[best]].tolist(), (scores[best] / divisor).tolist()

    def candidates(self, request: RecallRequest) -> Candidates:
        """Recall source: the next items after ``request.recent_items`` (most recent last)."""
        recent = list(request.recent_items)
        if not recent:
            return Candidates.empty()
        ids, scores = self.recommend(
            recent, request.k, exclude=recent if self.exclude_recent else ()
        )
        return Candidates(np.asarray(ids, dtype=object), np.asarray(scores, dtype=np.float32))

    def save(self, path: Path | str) -> None:
        """``config.json`` (class + constructor parameters) and ``arrays.npz``, no pickle."""
        check_is_fitted(self, "items_")
        path = Path(path)
        write_config(path, type(self).__name__, self.get_params())
        arrays: dict[str, np.ndarray] = {}
        for name in self._arrays:
            value = getattr(self, name)
            if name in self._sparse:
                for part in ("data", "indices", "indptr"):
                    arrays[f"{name}{part}"] = getattr(value, part)
                arrays[f"{name}shape"] = np.asarray(value.shape, dtype=np.int64)
            else:
                arrays[name] = value
        np.savez(path / "arrays.npz", allow_pickle=False, **arrays)

    @classmethod
    def load(cls, path: Path | str) -> Self:
        """Rebuild what :meth:`save` wrote; ArtifactError on unknown or missing parameters."""
        path = Path(path)
        params = read_config(path, cls.__name__)
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown, missing = sorted(set(params) - known), sorted(known - set(params))
        if unknown or missing:
            raise ArtifactError(
                f"{path / 'config.json'}: parameters do not match {cls.__name__}: "
                f"unknown {unknown}, missing {missing}"
            )
        obj = cls(**params)
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            for name in cls._arrays:
                if name in cls._sparse:
                    shape = tuple(int(n) for n in z[f"{name}shape"])
                    value: Any = sp.csr_matrix(
                        (z[f"{name}data"], z[f"{name}indices"], z[f"{name}indptr"]), shape=shape
                    )
                else:
                    value = z[name]
                setattr(obj, name, value)
        return obj
