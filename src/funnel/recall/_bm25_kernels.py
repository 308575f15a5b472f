"""numba kernels of the BM25 index: exhaustive accumulation + top-k, and fuzzy term expansion.

Why exhaustive: marketplace titles draw on a small vocabulary, so every query term's posting list
covers a large share of the catalog and dynamic pruning (WAND, MaxScore) has little to skip. A
tight scatter-add of precomputed impacts into a dense per-thread score array, followed by one
more pass over the same postings that feeds a k-sized heap and resets the array, does the same
work at a few nanoseconds per posting. Every kernel releases the GIL.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, inline="always")
def _worse(s1: float, d1: int, s2: float, d2: int) -> bool:
    """True when hit (s1, d1) ranks below (s2, d2): lower score, or equal score and higher row."""
    return s1 < s2 or (s1 == s2 and d1 > d2)


@nb.njit(cache=True, nogil=True)
def _sift_down(hs: np.ndarray, hd: np.ndarray, n: int, i: int) -> None:
    # min-heap on rank: the root is the worst hit kept so far
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        w = left
        right = left + 1
        if right < n and _worse(hs[right], hd[right], hs[left], hd[left]):
            w = right
        if not _worse(hs[w], hd[w], hs[i], hd[i]):
            return
        hs[i], hs[w] = hs[w], hs[i]
        hd[i], hd[w] = hd[w], hd[i]
        i = w


@nb.njit(cache=True, nogil=True)
def _sift_up(hs: np.ndarray, hd: np.ndarray, i: int) -> None:
    while i > 0:
        parent = (i - 1) // 2
        if not _worse(hs[i], hd[i], hs[parent], hd[parent]):
            return
        hs[i], hs[parent] = hs[parent], hs[i]
        hd[i], hd[parent] = hd[parent], hd[i]
        i = parent


@nb.njit(cache=True, nogil=True)
def _block_bounds(offsets: np.ndarray, docs: np.ndarray, lists: np.ndarray, n_rows: int,
                  block: int) -> np.ndarray:
    """(n_lists, n_blocks + 1) posting positions where each block of rows starts in each list."""
    n_blocks = (n_rows + block - 1) // block
    starts = np.arange(n_blocks + 1, dtype=np.int64) * block
    out = np.empty((lists.shape[0], n_blocks + 1), dtype=np.int64)
    for j in range(lists.shape[0]):
        lo, hi = offsets[lists[j]], offsets[lists[j] + 1]
        out[j] = lo + np.searchsorted(docs[lo:hi], starts)
    return out


@nb.njit(cache=True, nogil=True, fastmath=True)
def _chunk_max(acc: np.ndarray, c0: int, c1: int) -> float:
    m = np.float32(0.0)  # scores are >= 0 (and never NaN), so fast-math is exact here
    for i in range(c0, c1):
        x = acc[i]
        m = m if m > x else x
    return m


@nb.njit(cache=True, nogil=True)
def search_topk(
    offsets: np.ndarray,  # (n_lists + 1,) int64 CSR offsets
    docs: np.ndarray,  # (n_postings,) int32 rows, ascending within each list
    impacts: np.ndarray,  # (n_postings,) float32 boost * BM25 contribution
    exact: np.ndarray,  # (n_exact,) int64 list ids scored by impact
    fuzzy: np.ndarray,  # (n_fuzzy,) int64 list ids of fuzzy expansions
    fuzzy_group: np.ndarray,  # (n_groups + 1,) int64 offsets: lists of one (field, word) group
    fuzzy_score: np.ndarray,  # (n_groups,) float32 constant added once per matching row
    market_codes: np.ndarray,  # (n_rows,) int32
    market: int,  # -1 = any market
    k: int,
    block: int,  # rows scored at a time: the accumulator stays in L1/L2 cache
    exact_max: np.ndarray,  # (n_exact,) float32 largest impact of each exact list
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and scores of the ``k`` best rows, best first, ties broken by lower row.

    Rows are processed in blocks: each list's postings that fall in the block are added into
    a block-sized accumulator. Selection then follows MaxScore: once the heap is full, a row
    can only beat its worst score if it is in one of the "essential" lists, those left after
    removing the lists of smallest maximum impact whose maxima sum below that score; when
    those lists are sparse in the block only their rows are checked, otherwise the block is
    scanned 64 rows at a time. The accumulator is cleared before the next block.
    """
    n_rows = market_codes.shape[0]
    block = max(1, min(block, n_rows))
    be = _block_bounds(offsets, docs, exact, n_rows, block)
    bf = _block_bounds(offsets, docs, fuzzy, n_rows, block)
    acc = np.zeros(block, dtype=np.float32)
    stamp = np.zeros(block, dtype=np.int64)
    tick = 0
    # scorers: each exact list, then each fuzzy group; ``first`` maps a scorer to its rows of
    # ``be`` (exact) or ``bf`` (fuzzy, offset by n_exact) and ``order`` sorts them by bound
    n_exact = exact.shape[0]
    n_scorers = n_exact + fuzzy_group.shape[0] - 1
    bound = np.empty(n_scorers, dtype=np.float64)
    first = np.empty(n_scorers + 1, dtype=np.int64)
    for j in range(n_exact):
        bound[j] = exact_max[j]
        first[j] = j
    for g in range(fuzzy_group.shape[0] - 1):
        bound[n_exact + g] = fuzzy_score[g]
        first[n_exact + g] = n_exact + fuzzy_group[g]
    first[n_scorers] = n_exact + fuzzy_group[fuzzy_group.shape[0] - 1]
    order = np.argsort(bound, kind="mergesort")
    bound_sum = np.zeros(n_scorers + 1, dtype=np.float64)
    for r in range(n_scorers):
        bound_sum[r + 1] = bound_sum[r] + bound[order[r]]
    hs = np.empty(k, dtype=np.float32)
    hd = np.empty(k, dtype=np.int32)
    n = 0
    for b in range(be.shape[1] - 1):
        lo = b * block
        width = min(block, n_rows - lo)
        touched = False
        for j in range(exact.shape[0]):
            touched |= be[j, b + 1] > be[j, b]
            for p in range(be[j, b], be[j, b + 1]):
                acc[docs[p] - lo] += impacts[p]
        for g in range(fuzzy_group.shape[0] - 1):
            c = fuzzy_score[g]
            g0, g1 = fuzzy_group[g], fuzzy_group[g + 1]
            if g1 - g0 == 1:
                touched |= bf[g0, b + 1] > bf[g0, b]
                for p in range(bf[g0, b], bf[g0, b + 1]):
                    acc[docs[p] - lo] += c
                continue
            tick += 1  # a row counts once per group however many of its terms it has
            for j in range(g0, g1):
                touched |= bf[j, b + 1] > bf[j, b]
                for p in range(bf[j, b], bf[j, b + 1]):
                    d = docs[p] - lo
                    if stamp[d] != tick:
                        stamp[d] = tick
                        acc[d] += c
        if not touched:
            continue
        thr = hs[0] if n == k else np.float32(0.0)
        n_skip = 0  # scorers (by ascending bound) whose rows alone cannot reach thr
        if n == k:
            while n_skip < n_scorers and bound_sum[n_skip + 1] * 1.00001 < thr:
                n_skip += 1
        n_essential = 0
        for r in range(n_skip, n_scorers):
            sc = order[r]
            for j in range(first[sc], first[sc + 1]):
                n_essential += (be[j, b + 1] - be[j, b]) if sc < n_exact else (
                    bf[j - n_exact, b + 1] - bf[j - n_exact, b])
        if n_essential * 4 < width:
            for r in range(n_skip, n_scorers):
                sc = order[r]
                for j in range(first[sc], first[sc + 1]):
                    if sc < n_exact:
                        p0, p1 = be[j, b], be[j, b + 1]
                    else:
                        p0, p1 = bf[j - n_exact, b], bf[j - n_exact, b + 1]
                    for p in range(p0, p1):
                        d = docs[p]
                        s = acc[d - lo]
                        if s <= 0.0:  # unmatched or already checked
                            continue
                        acc[d - lo] = 0.0
                        if market >= 0 and market_codes[d] != market:
                            continue
                        if n < k:
                            hs[n] = s
                            hd[n] = d
                            _sift_up(hs, hd, n)
                            n += 1
                        elif _worse(hs[0], hd[0], s, d):
                            hs[0] = s
                            hd[0] = d
                            _sift_down(hs, hd, n, 0)
            for r in range(n_skip):
                sc = order[r]
                for j in range(first[sc], first[sc + 1]):
                    if sc < n_exact:
                        p0, p1 = be[j, b], be[j, b + 1]
                    else:
                        p0, p1 = bf[j - n_exact, b], bf[j - n_exact, b + 1]
                    for p in range(p0, p1):
                        acc[docs[p] - lo] = 0.0
            continue
        for c0 in range(0, width, 64):
            c1 = min(c0 + 64, width)
            thr = hs[0] if n == k else np.float32(0.0)
            if _chunk_max(acc, c0, c1) <= thr:  # most chunks hold nothing to keep
                continue
            for i in range(c0, c1):
                s = acc[i]
                d = lo + i
                if s <= 0.0 or (market >= 0 and market_codes[d] != market):
                    continue
                if n < k:
                    hs[n] = s
                    hd[n] = d
                    _sift_up(hs, hd, n)
                    n += 1
                elif s > hs[0]:  # rows ascend here, so a tie never displaces a lower row
                    hs[0] = s
                    hd[0] = d
                    _sift_down(hs, hd, n, 0)
        acc[:width] = 0.0
    out_s = np.empty(n, dtype=np.float32)
    out_d = np.empty(n, dtype=np.int32)
    for i in range(n - 1, -1, -1):  # pop worst first into the back
        out_s[i] = hs[0]
        out_d[i] = hd[0]
        hs[0] = hs[i]
        hd[0] = hd[i]
        _sift_down(hs, hd, i, 0)
    return out_d, out_s


@nb.njit(cache=True, nogil=True)
def _osa_within(a: np.ndarray, la: int, b: np.ndarray, lb: int, limit: int, row: np.ndarray,
                prev: np.ndarray, prev2: np.ndarray) -> bool:
    """Optimal-string-alignment distance (adjacent transposition costs 1) <= ``limit``."""
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
            return False
        for j in range(lb + 1):
            prev2[j] = prev[j]
            prev[j] = row[j]
    return prev[lb] <= limit


@nb.njit(cache=True, nogil=True)
def fuzzy_expand(codes: np.ndarray, lengths: np.ndarray, word: np.ndarray, limit: int,
                 ) -> np.ndarray:
    """Ids of the vocabulary terms (code-point rows of ``codes``) within ``limit`` edits of word."""
    lw = word.shape[0]
    width = max(codes.shape[1], lw) + 1
    row = np.empty(width, dtype=np.int64)
    prev = np.empty(width, dtype=np.int64)
    prev2 = np.zeros(width, dtype=np.int64)
    out = np.empty(codes.shape[0], dtype=np.int64)
    n = 0
    for t in range(codes.shape[0]):
        lt = lengths[t]
        if abs(lt - lw) > limit:
            continue
        if _osa_within(word, lw, codes[t], lt, limit, row, prev, prev2):
            out[n] = t
            n += 1
    return out[:n]
