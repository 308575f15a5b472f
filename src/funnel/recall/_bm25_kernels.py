"""numba kernels of the BM25 index: exhaustive accumulation + top-k, and fuzzy term expansion.

Why mostly exhaustive: marketplace titles draw on a small vocabulary, so every query term's
posting list covers a large share of the catalog and skipping postings (WAND) saves little. A
tight scatter-add of precomputed impacts into a cache-sized accumulator costs ~1 ns a posting;
MaxScore bounds are used only to check fewer rows for the top-k heap. Kernels release the GIL.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# fuzzy terms use the shared typo distance (funnel.text), not a copy of it
from funnel._text_kernels import within_edits as fuzzy_expand

__all__ = ["fuzzy_expand", "search_topk"]


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
def _chunk_max(acc: np.ndarray, c0: int, c1: int) -> np.float32:
    m = np.float32(0.0)  # scores are >= 0 (and never NaN), so fast-math is exact here
    for i in range(c0, c1):
        x = acc[i]
        m = m if m > x else x
    return m


@nb.njit(cache=True, nogil=True)
def _push(hs: np.ndarray, hd: np.ndarray, n: int, k: int, s: float, d: int) -> int:
    """Offer hit (s, d) to the k-heap holding n hits; returns the new n."""
    if n < k:
        hs[n] = s
        hd[n] = d
        _sift_up(hs, hd, n)
        return n + 1
    if _worse(hs[0], hd[0], s, d):
        hs[0] = s
        hd[0] = d
        _sift_down(hs, hd, n, 0)
    return n


@nb.njit(cache=True, nogil=True)
def search_topk(
    offsets: np.ndarray,  # (n_terms + 1,) int64 CSR offsets, one list per term
    docs: np.ndarray,  # (n_postings,) int32 rows, ascending within each list
    impacts: np.ndarray,  # (n_postings,) float32 sum over fields of boost * BM25
    masks: np.ndarray,  # (n_postings,) uint8 bit f set when field f holds the term
    mask_score: np.ndarray,  # (2**n_fields,) float32 fuzzy score of a set of fields
    lists: np.ndarray,  # (n_lists,) int64 terms scored per posting
    w_imp: np.ndarray,  # (n_lists,) float32 1 for a query token, else 0
    w_fz: np.ndarray,  # (n_lists,) float32 fuzzy words whose only expansion is this term
    group_lists: np.ndarray,  # (n_group_lists,) int64 terms of multi-term fuzzy groups
    group_off: np.ndarray,  # (n_groups + 1,) int64 offsets into group_lists
    bound: np.ndarray,  # (n_lists + n_groups,) float64 largest score each scorer can add
    market_codes: np.ndarray,  # (n_rows,) int32
    market: int,  # -1 = any market
    k: int,
    block: int,  # rows scored at a time: the accumulator stays in L1/L2 cache
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and scores of the ``k`` best rows, best first, ties broken by lower row.

    Rows are processed in blocks. Each scorer (a term list, or a fuzzy word with several
    expansions whose fields count once each) adds the block's postings into a block-sized
    accumulator. Selection follows MaxScore: once the heap is full, a row can only beat its
    worst score if it is in an "essential" scorer, one left after dropping the scorers of
    smallest bound whose bounds sum below that score; when those are sparse in the block
    only their rows are checked, otherwise the block is scanned 64 rows at a time.
    """
    n_rows = market_codes.shape[0]
    block = max(1, min(block, n_rows))
    n_lists = lists.shape[0]
    n_groups = group_off.shape[0] - 1
    bl = _block_bounds(offsets, docs, lists, n_rows, block)
    bg = _block_bounds(offsets, docs, group_lists, n_rows, block)
    acc = np.zeros(block, dtype=np.float32)
    orm = np.zeros(block, dtype=np.uint8)
    # scorer r < n_lists is list r; scorer n_lists + g is group g (rows of bg)
    n_scorers = n_lists + n_groups
    first = np.empty(n_scorers + 1, dtype=np.int64)
    for j in range(n_lists):
        first[j] = j
    for g in range(n_groups + 1):
        first[n_lists + g] = n_lists + group_off[g]
    order = np.argsort(bound, kind="mergesort")
    bound_sum = np.zeros(n_scorers + 1, dtype=np.float64)
    for r in range(n_scorers):
        bound_sum[r + 1] = bound_sum[r] + bound[order[r]]
    hs = np.empty(k, dtype=np.float32)
    hd = np.empty(k, dtype=np.int32)
    n = 0
    for b in range(bl.shape[1] - 1):
        lo = b * block
        width = min(block, n_rows - lo)
        touched = False
        for j in range(n_lists):
            p0, p1 = bl[j, b], bl[j, b + 1]
            touched |= p1 > p0
            wi, wf = w_imp[j], w_fz[j]
            if wf == 0:
                for p in range(p0, p1):
                    acc[np.uint32(docs[p] - lo)] += impacts[p]
            elif wi == 0:
                for p in range(p0, p1):
                    acc[np.uint32(docs[p] - lo)] += wf * mask_score[masks[p]]
            else:
                for p in range(p0, p1):
                    acc[np.uint32(docs[p] - lo)] += impacts[p] + wf * mask_score[masks[p]]
        for g in range(n_groups):  # fields of a row count once per fuzzy word
            for j in range(group_off[g], group_off[g + 1]):
                p0, p1 = bg[j, b], bg[j, b + 1]
                touched |= p1 > p0
                for p in range(p0, p1):
                    orm[np.uint32(docs[p] - lo)] |= masks[p]
            for j in range(group_off[g], group_off[g + 1]):
                for p in range(bg[j, b], bg[j, b + 1]):
                    off = np.uint32(docs[p] - lo)
                    acc[off] += mask_score[orm[off]]  # mask_score[0] == 0: a row's later visits
                    orm[off] = 0
        if not touched:
            continue
        n_skip = 0  # scorers (by ascending bound) whose rows alone cannot reach the heap
        if n == k:
            while n_skip < n_scorers and bound_sum[n_skip + 1] * 1.00001 < hs[0]:
                n_skip += 1
        n_essential = 0
        n_block = 0
        for r in range(n_scorers):
            for j in range(first[order[r]], first[order[r] + 1]):
                m = (bl[j, b + 1] - bl[j, b]) if j < n_lists else (
                    bg[j - n_lists, b + 1] - bg[j - n_lists, b])
                n_block += m
                if r >= n_skip:
                    n_essential += m
        if n_essential < width:
            # branch-light: most rows fail the first test, a checked row is zeroed so a row
            # in two essential lists is offered once
            thr = hs[0] if n == k else np.float32(0.0)
            root = hd[0] if n == k else n_rows
            for r in range(n_skip, n_scorers):
                for j in range(first[order[r]], first[order[r] + 1]):
                    if j < n_lists:
                        p0, p1 = bl[j, b], bl[j, b + 1]
                    else:
                        p0, p1 = bg[j - n_lists, b], bg[j - n_lists, b + 1]
                    for p in range(p0, p1):
                        d = docs[p]
                        off = np.uint32(d - lo)
                        s = acc[off]
                        if s > thr or (s == thr and d < root and s > 0.0):
                            acc[off] = 0.0
                            if market < 0 or market_codes[d] == market:
                                n = _push(hs, hd, n, k, s, d)
                                thr = hs[0] if n == k else np.float32(0.0)
                                root = hd[0] if n == k else n_rows
        else:
            for c0 in range(0, width, 64):
                c1 = min(c0 + 64, width)
                thr = hs[0] if n == k else np.float32(0.0)
                if _chunk_max(acc, c0, c1) <= thr:  # most chunks hold nothing to keep
                    continue
                for i in range(c0, c1):
                    s = acc[i]
                    d = lo + i
                    if s > thr and (market < 0 or market_codes[d] == market):
                        n = _push(hs, hd, n, k, s, d)  # rows ascend: a tie keeps the lower
                        thr = hs[0] if n == k else np.float32(0.0)
        if n_block * 8 < width:  # clear what was written, else the whole block
            for r in range(n_scorers):
                for j in range(first[order[r]], first[order[r] + 1]):
                    if j < n_lists:
                        p0, p1 = bl[j, b], bl[j, b + 1]
                    else:
                        p0, p1 = bg[j - n_lists, b], bg[j - n_lists, b + 1]
                    for p in range(p0, p1):
                        acc[np.uint32(docs[p] - lo)] = 0.0
        else:
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
