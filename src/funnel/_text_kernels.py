"""numba kernels of :mod:`funnel.text`: the one typo distance, and vocabulary scans with it.

The distance is optimal string alignment (Damerau-Levenshtein without edits inside a moved
pair): insertion, deletion, substitution and the swap of two adjacent characters cost 1 each.
One dynamic programme (:func:`_osa`) serves every caller: a whole-string distance, the distance
to the nearest prefix (what a typed prefix needs), and "within ``limit`` edits" scans over a
vocabulary, which stop a row as soon as every cell of it exceeds the limit. Code points are
compared as integers, so callers pass ``np.int32`` arrays of ``ord`` values.
"""

from __future__ import annotations

import numba as nb
import numpy as np

BIG = 1 << 30  # "no limit"


@nb.njit(cache=True, nogil=True)
def _osa(a: np.ndarray, la: int, b: np.ndarray, lb: int, limit: int, row: np.ndarray,
         prev: np.ndarray, prev2: np.ndarray) -> int:
    """OSA distance of ``a[:la]`` and ``b[:lb]``, or ``limit + 1`` once it must exceed ``limit``.

    On a full run (no early exit) ``prev[:lb + 1]`` holds the last row: ``prev[j]`` is the
    distance of ``a[:la]`` to the prefix ``b[:j]``. A row's minimum never decreases, so a row
    whose every cell exceeds ``limit`` ends the search.
    """
    for j in range(lb + 1):
        prev[j] = j
    for i in range(1, la + 1):
        row[0] = i
        best = i
        for j in range(1, lb + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            row[j] = v
            best = min(best, v)
        if best > limit:
            return limit + 1
        for j in range(lb + 1):
            prev2[j] = prev[j]
            prev[j] = row[j]
    return min(prev[lb], limit + 1)


@nb.njit(cache=True, nogil=True)
def osa_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Edit distance of ``a`` and ``b`` (adjacent swaps cost 1)."""
    width = b.shape[0] + 1
    row = np.empty(width, np.int64)
    prev = np.empty(width, np.int64)
    prev2 = np.zeros(width, np.int64)
    return _osa(a, a.shape[0], b, b.shape[0], BIG, row, prev, prev2)


@nb.njit(cache=True, nogil=True)
def prefix_distance(p: np.ndarray, key: np.ndarray) -> int:
    """Edit distance of ``p`` to the nearest prefix of ``key`` (a typed prefix's typo)."""
    width = key.shape[0] + 1
    row = np.empty(width, np.int64)
    prev = np.empty(width, np.int64)
    prev2 = np.zeros(width, np.int64)
    _osa(p, p.shape[0], key, key.shape[0], BIG, row, prev, prev2)
    return prev[: key.shape[0] + 1].min()


@nb.njit(cache=True, nogil=True)
def within_edits(codes: np.ndarray, lengths: np.ndarray, word: np.ndarray, limit: int,
                 ) -> np.ndarray:
    """Ids of the vocabulary terms (code-point rows of ``codes``) within ``limit`` edits of
    ``word``, the word itself included."""
    return close_terms(codes, lengths, word, limit, BIG)


@nb.njit(cache=True, nogil=True)
def close_terms(codes: np.ndarray, lengths: np.ndarray, word: np.ndarray, limit: int,
                min_prefix: int) -> np.ndarray:
    """Ids of the vocabulary terms within ``limit`` edits of ``word``, or that start with it
    when ``word`` has ``min_prefix`` characters or more (a word still being typed)."""
    lw = word.shape[0]
    width = max(codes.shape[1], lw) + 1
    row = np.empty(width, np.int64)
    prev = np.empty(width, np.int64)
    prev2 = np.zeros(width, np.int64)
    out = np.empty(codes.shape[0], np.int64)
    n = 0
    for t in range(codes.shape[0]):
        lt = lengths[t]
        if lw >= min_prefix and lt >= lw:
            starts = True
            for j in range(lw):
                if codes[t, j] != word[j]:
                    starts = False
                    break
            if starts:
                out[n] = t
                n += 1
                continue
        if abs(lt - lw) > limit:
            continue
        if _osa(word, lw, codes[t], lt, limit, row, prev, prev2) <= limit:
            out[n] = t
            n += 1
    return out[:n]
