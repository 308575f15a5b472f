"""Numba kernels of the completion index: prefix ranges, top-k gather, one-edit search.

Keys are sorted and stored as one array of code units (``codes``) with ``offsets``; a prefix
is a contiguous range of keys found by binary search. The top scores of a range come from a
sparse table over blocks of ``block`` keys, each row holding the best ``K`` keys of
``2**level`` consecutive blocks (range-maximum query generalised to top-K), plus a scan of the
two partial blocks at the range ends. So a lookup reads O(block + K) keys whatever the prefix.

Ranges come from the top of the key trie (:func:`build_trie`: the nodes over more than
``block`` keys with their child lists; 0.09 node per key on 1M synthetic queries) rather than
a binary search over every key: a search over a million keys is ~40 cache misses, and the
one-edit search made hundreds of them (one per child character per position), which was
nearly all of its cost.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _cmp(codes, offsets, i, p, plen):  # type: ignore[no-untyped-def]  # numba-compiled, typed per call
    """Compare key ``i`` cut to ``plen`` units with ``p[:plen]``: -1, 0 (starts with), 1."""
    a = offsets[i]
    n = offsets[i + 1] - a
    m = min(n, plen)
    for j in range(m):
        c = codes[a + j]
        d = p[j]
        if c < d:
            return -1
        if c > d:
            return 1
    if n < plen:
        return -1
    return 0


@nb.njit(cache=True, nogil=True)
def prefix_range(codes, offsets, p, plen, lo, hi):  # type: ignore[no-untyped-def]  # numba-compiled, typed per call
    """The half-open range of keys in ``[lo, hi)`` that start with ``p[:plen]``."""
    a = lo
    b = hi
    while a < b:
        mid = (a + b) // 2
        if _cmp(codes, offsets, mid, p, plen) < 0:
            a = mid + 1
        else:
            b = mid
    start = a
    b = hi
    while a < b:
        mid = (a + b) // 2
        if _cmp(codes, offsets, mid, p, plen) <= 0:
            a = mid + 1
        else:
            b = mid
    return start, a


@nb.njit(cache=True, nogil=True)
def find_exact(codes, offsets, p):  # type: ignore[no-untyped-def]  # numba-compiled, typed per call
    """Index of the first key equal to ``p``, or -1."""
    n = offsets.shape[0] - 1
    lo, hi = prefix_range(codes, offsets, p, p.shape[0], 0, n)
    if lo < hi and offsets[lo + 1] - offsets[lo] == p.shape[0]:
        return lo
    return -1


@nb.njit(cache=True, nogil=True)
def _pool_add(pool_t, pool_s, count, t, s):  # type: ignore[no-untyped-def]  # numba-compiled, typed per call
    """Keep the best ``len(pool_t)`` distinct targets seen so far (max score per target)."""
    for j in range(count):
        if pool_t[j] == t:
            if s > pool_s[j]:
                pool_s[j] = s
            return count
    if count < pool_t.shape[0]:
        pool_t[count] = t
        pool_s[count] = s
        return count + 1
    jmin = 0  # the worst entry: lowest score, then highest (lexicographically last) target
    for j in range(1, count):
        if pool_s[j] < pool_s[jmin] or (pool_s[j] == pool_s[jmin] and pool_t[j] > pool_t[jmin]):
            jmin = j
    if s > pool_s[jmin] or (s == pool_s[jmin] and t < pool_t[jmin]):
        pool_t[jmin] = t
        pool_s[jmin] = s
    return count


@nb.njit(cache=True, nogil=True)
def _gather(lo, hi, scores, targets, table, level_start, block, pool_t, pool_s, count, factor):  # type: ignore[no-untyped-def]  # numba-compiled  # noqa: E501
    """Add the top keys of range ``[lo, hi)`` (scores times ``factor``) to the pool."""
    if hi - lo <= 2 * block:
        for i in range(lo, hi):
            count = _pool_add(pool_t, pool_s, count, targets[i], scores[i] * factor)
        return count
    bl = (lo + block - 1) // block
    br = hi // block
    for i in range(lo, bl * block):
        count = _pool_add(pool_t, pool_s, count, targets[i], scores[i] * factor)
    for i in range(br * block, hi):
        count = _pool_add(pool_t, pool_s, count, targets[i], scores[i] * factor)
    if br > bl:
        span = br - bl
        lev = 0
        while (1 << (lev + 1)) <= span:
            lev += 1
        for row in (level_start[lev] + bl, level_start[lev] + br - (1 << lev)):
            for j in range(table.shape[1]):
                i = table[row, j]
                if i < 0:
                    break
                count = _pool_add(pool_t, pool_s, count, targets[i], scores[i] * factor)
    return count


@nb.njit(cache=True, nogil=True)
def build_trie(codes: np.ndarray, offsets: np.ndarray, leaf: int,
               ) -> tuple[np.ndarray, np.ndarray]:
    """The top of the key trie made explicit: every node over more than ``leaf`` keys lists
    its children, so a lookup walks a few small nodes instead of binary-searching a range of
    a million keys (cache misses, not comparisons, were the cost), and the one-edit search
    reads a node's children from that list instead of finding each by binary search.

    Nodes are breadth-first; ``nodes[v] = (lo, hi, first child, n children)``, first child
    -1 for a leaf (its range of at most ``leaf`` keys is binary-searched); ``chars[v]`` is
    the character on the edge into ``v``. Node 0 is the root (every key).
    """
    n = offsets.shape[0] - 1
    cap = 1024
    chars = np.zeros(cap, codes.dtype)
    nodes = np.empty((cap, 4), np.int32)
    depth = np.zeros(cap, np.int32)
    nodes[0, 0] = 0
    nodes[0, 1] = n
    count = 1
    v = 0
    while v < count:
        lo = nodes[v, 0]
        hi = nodes[v, 1]
        nodes[v, 2] = -1
        nodes[v, 3] = 0
        if hi - lo > leaf:
            d = depth[v]
            j = lo
            while j < hi and offsets[j + 1] - offsets[j] <= d:  # keys equal to the node
                j += 1
            nodes[v, 2] = count
            while j < hi:
                c = codes[offsets[j] + d]
                start = j
                j += 1
                while j < hi and codes[offsets[j] + d] == c:
                    j += 1
                if count == cap:
                    cap *= 2
                    chars = _grown(chars, cap)
                    nodes = _grown(nodes, cap)
                    depth = _grown(depth, cap)
                chars[count] = c
                nodes[count, 0] = start
                nodes[count, 1] = j
                depth[count] = d + 1
                count += 1
            nodes[v, 3] = count - nodes[v, 2]
        v += 1
    return chars[:count].copy(), nodes[:count].copy()


@nb.njit(cache=True, nogil=True)
def _grown(a: np.ndarray, cap: int) -> np.ndarray:
    """``a`` copied into a longer array of ``cap`` rows."""
    out = np.empty((cap,) + a.shape[1:], a.dtype)
    out[: a.shape[0]] = a
    return out


@nb.njit(cache=True, nogil=True)
def _child(chars: np.ndarray, nodes: np.ndarray, v: int, c: int) -> int:
    """The child of listed node ``v`` on character ``c``, or -1."""
    first = nodes[v, 2]
    end = first + nodes[v, 3]
    a = first
    b = end
    while a < b:
        mid = (a + b) >> 1
        if chars[mid] < c:
            a = mid + 1
        else:
            b = mid
    if a < end and chars[a] == c:
        return a
    return -1


@nb.njit(cache=True, nogil=True)
def descend(codes: np.ndarray, offsets: np.ndarray, chars: np.ndarray, nodes: np.ndarray,
            v: int, d: int, lo: int, hi: int, p: np.ndarray, plen: int,
            ) -> tuple[int, int, int]:
    """Trie node and key range ``[a, b)`` of the prefix ``p[:plen]``, given that ``p[:d]``
    is node ``v``, or when ``v`` is -1 (below the listed nodes) that its keys are
    ``[lo, hi)``. The node is -1 when ``p[:plen]`` is below the listed nodes; a < b when
    keys start with ``p[:plen]``."""
    while v >= 0 and d < plen:
        if nodes[v, 2] < 0:  # a leaf: binary-search its few keys
            lo = nodes[v, 0]
            hi = nodes[v, 1]
            v = -1
        else:
            v = _child(chars, nodes, v, p[d])
            if v < 0:
                return -1, 0, 0
            d += 1
    if v >= 0:
        return v, nodes[v, 0], nodes[v, 1]
    a, b = prefix_range(codes, offsets, p, plen, lo, hi)
    return -1, a, b


@nb.njit(cache=True, nogil=True)
def _typo(codes, offsets, scores, targets, table, level_start, block, chars, nodes, p,  # type: ignore[no-untyped-def]  # numba-compiled  # noqa: E501
          pool_t, pool_s, count, penalty):
    """Add completions of every prefix one edit away from ``p``: the keys ``k`` with
    ``funnel.text.prefix_typo_distance(p, k) <= MAX_TYPO_EDITS`` (the shared typo rule; a
    test checks this search against that distance).

    It enumerates ``p``'s one-edit variants in the index rather than scoring every key: the
    edit must sit at or before the first position where ``p`` leaves the index, and
    substituted or inserted characters are only those the index has at that node (read from
    the trie's child list, or from the keys of a small leaf range), so the work is bounded
    by the node fan-out, not the alphabet; each variant is then a walk down the trie.
    """
    m = p.shape[0]
    vs = np.full(m + 1, -1, np.int64)
    los = np.zeros(m + 1, np.int64)
    his = np.zeros(m + 1, np.int64)
    vs[0] = 0
    his[0] = offsets.shape[0] - 1
    f = 0
    for i in range(1, m + 1):
        v, lo, hi = descend(codes, offsets, chars, nodes, vs[i - 1], i - 1, los[i - 1],
                            his[i - 1], p, i)
        if lo >= hi:
            break
        vs[i] = v
        los[i] = lo
        his[i] = hi
        f = i
    buf = np.empty(m + 1, p.dtype)
    for i in range(min(f, m - 1), -1, -1):
        v0 = vs[i]
        lo0 = los[i]
        hi0 = his[i]
        for j in range(i):
            buf[j] = p[j]
        # deletion of p[i]
        for j in range(i + 1, m):
            buf[j - 1] = p[j]
        if m - 1 > 0:
            _, a, b = descend(codes, offsets, chars, nodes, v0, i, lo0, hi0, buf, m - 1)
            if a < b:
                count = _gather(a, b, scores, targets, table, level_start, block,
                                pool_t, pool_s, count, penalty)
        # transposition of p[i], p[i+1]
        if i + 1 < m and p[i] != p[i + 1]:
            for j in range(i, m):
                buf[j] = p[j]
            buf[i] = p[i + 1]
            buf[i + 1] = p[i]
            _, a, b = descend(codes, offsets, chars, nodes, v0, i, lo0, hi0, buf, m)
            if a < b:
                count = _gather(a, b, scores, targets, table, level_start, block,
                                pool_t, pool_s, count, penalty)
        # substitution and insertion with each child character of node p[:i]
        if v0 >= 0 and nodes[v0, 2] >= 0:
            count = _typo_children(codes, offsets, scores, targets, table, level_start, block,
                                   chars, nodes, p, buf, i, v0, pool_t, pool_s, count, penalty)
        else:
            count = _typo_leaf(codes, offsets, scores, targets, table, level_start, block,
                               p, buf, i, lo0, hi0, pool_t, pool_s, count, penalty)
    return count


@nb.njit(cache=True, nogil=True)
def _typo_children(codes, offsets, scores, targets, table, level_start, block, chars, nodes,  # type: ignore[no-untyped-def]  # numba-compiled  # noqa: E501
                   p, buf, i, v0, pool_t, pool_s, count, penalty):
    """Substitute or insert at ``i`` each child character of listed node ``v0 = p[:i]``."""
    m = p.shape[0]
    first = nodes[v0, 2]
    for u in range(first, first + nodes[v0, 3]):
        c = chars[u]
        buf[i] = c
        if c != p[i]:
            for t in range(i + 1, m):
                buf[t] = p[t]
            _, a, b = descend(codes, offsets, chars, nodes, u, i + 1, 0, 0, buf, m)
            if a < b:
                count = _gather(a, b, scores, targets, table, level_start, block,
                                pool_t, pool_s, count, penalty)
        for t in range(i, m):
            buf[t + 1] = p[t]
        _, a, b = descend(codes, offsets, chars, nodes, u, i + 1, 0, 0, buf, m + 1)
        if a < b:
            count = _gather(a, b, scores, targets, table, level_start, block,
                            pool_t, pool_s, count, penalty)
    return count


@nb.njit(cache=True, nogil=True)
def _typo_leaf(codes, offsets, scores, targets, table, level_start, block, p, buf, i, lo0,  # type: ignore[no-untyped-def]  # numba-compiled  # noqa: E501
               hi0, pool_t, pool_s, count, penalty):
    """Substitute or insert at ``i`` each character following ``p[:i]`` in its few keys
    ``[lo0, hi0)`` (a node below the listed trie: its children are found in the keys)."""
    m = p.shape[0]
    j = lo0
    while j < hi0:
        start = offsets[j]
        if offsets[j + 1] - start <= i:
            j += 1
            continue
        c = codes[start + i]
        buf[i] = c
        clo, chi = prefix_range(codes, offsets, buf, i + 1, j, hi0)
        if c != p[i]:
            for t in range(i + 1, m):
                buf[t] = p[t]
            a, b = prefix_range(codes, offsets, buf, m, clo, chi)
            if a < b:
                count = _gather(a, b, scores, targets, table, level_start, block,
                                pool_t, pool_s, count, penalty)
        for t in range(i, m):
            buf[t + 1] = p[t]
        a, b = prefix_range(codes, offsets, buf, m + 1, clo, chi)
        if a < b:
            count = _gather(a, b, scores, targets, table, level_start, block,
                            pool_t, pool_s, count, penalty)
        j = max(chi, j + 1)
    return count


@nb.njit(cache=True, nogil=True)
def _rescore(pool_t, pool_s, count, cats, mkts, user_cats, user_mkt, cat_lift, mkt_lift):  # type: ignore[no-untyped-def]  # numba-compiled  # noqa: E501
    """Scores times ``1 + lift`` for targets in the user's categories / market."""
    final = np.empty(count, np.float64)
    for j in range(count):
        t = pool_t[j]
        mult = 1.0
        c = cats[t]
        if c >= 0:
            for u in user_cats:
                if u == c:
                    mult *= 1.0 + cat_lift
                    break
        if user_mkt >= 0 and mkts[t] == user_mkt:
            mult *= 1.0 + mkt_lift
        final[j] = pool_s[j] * mult
    return final


@nb.njit(cache=True, nogil=True)
def _select(pool_t, final, count, k, out_t, out_s, n_out, skip):  # type: ignore[no-untyped-def]  # numba-compiled, typed per call
    """Append the best of the pool (score desc, then key order) to the outputs, up to k."""
    used = np.zeros(count, np.bool_)
    for j in range(count):
        for r in range(skip):
            if out_t[r] == pool_t[j]:
                used[j] = True
    while n_out < k:
        best = -1
        for j in range(count):
            if used[j]:
                continue
            if best < 0 or final[j] > final[best] or (
                final[j] == final[best] and pool_t[j] < pool_t[best]
            ):
                best = j
        if best < 0:
            break
        used[best] = True
        out_t[n_out] = pool_t[best]
        out_s[n_out] = final[best]
        n_out += 1
    return n_out


@nb.njit(cache=True, nogil=True)
def complete(codes, offsets, scores, targets, cats, mkts, table, level_start, block, chars,  # type: ignore[no-untyped-def]  # numba-compiled  # noqa: E501
             nodes, p, user_cats, user_mkt, cat_lift, mkt_lift, k, pool_size, typo_min_len,
             typo_below, penalty):
    """Top-``k`` target keys for prefix ``p``, re-scored for the user; and the exact count.

    Exact-prefix completions always come first; when there are fewer than ``typo_below`` of
    them (and ``p`` has ``typo_min_len`` units or more), completions of one-edit variants of
    ``p`` fill the remaining slots. Returns ``(targets, scores, n_exact)``.
    """
    pool_t = np.empty(pool_size, np.int64)
    pool_s = np.empty(pool_size, np.float64)
    n = offsets.shape[0] - 1
    m = p.shape[0]
    _, lo, hi = descend(codes, offsets, chars, nodes, 0, 0, 0, n, p, m)
    count = 0
    if lo < hi:
        count = _gather(lo, hi, scores, targets, table, level_start, block,
                        pool_t, pool_s, count, 1.0)
    out_t = np.empty(k, np.int64)
    out_s = np.empty(k, np.float64)
    final = _rescore(pool_t, pool_s, count, cats, mkts, user_cats, user_mkt, cat_lift, mkt_lift)
    n_out = _select(pool_t, final, count, k, out_t, out_s, 0, 0)
    n_exact = n_out
    if n_out < k and n_out < typo_below and m >= typo_min_len:
        count = _typo(codes, offsets, scores, targets, table, level_start, block, chars,
                      nodes, p, pool_t, pool_s, 0, penalty)
        final = _rescore(pool_t, pool_s, count, cats, mkts, user_cats, user_mkt, cat_lift,
                         mkt_lift)
        n_out = _select(pool_t, final, count, k, out_t, out_s, n_out, n_exact)
    return out_t[:n_out], out_s[:n_out], n_exact


@nb.njit(cache=True, nogil=True)
def gather_keys(codes, offsets, ids):  # type: ignore[no-untyped-def]  # numba-compiled, typed per call
    """The code units of keys ``ids`` concatenated, and the end offset of each."""
    ends = np.empty(ids.shape[0], np.int64)
    total = 0
    for j in range(ids.shape[0]):
        total += offsets[ids[j] + 1] - offsets[ids[j]]
        ends[j] = total
    flat = np.empty(total, codes.dtype)
    pos = 0
    for j in range(ids.shape[0]):
        a = offsets[ids[j]]
        b = offsets[ids[j] + 1]
        flat[pos : pos + b - a] = codes[a:b]
        pos += b - a
    return flat, ends
