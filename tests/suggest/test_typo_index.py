"""The one-edit search over the trie (issue #23) answers what the old search answered.

The old kernel, a walk that binary-searched every node over the whole sorted key array, is
kept below verbatim as the oracle: same completions, same order, same scores on a fixed
synthetic log with pinyin aliases, and the same pool of candidates behind them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numba as nb
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from funnel import text
from funnel.exceptions import ArtifactError
from funnel.suggest import _kernels
from funnel.suggest.completion import QueryCompleter, _encode
from funnel.suggest.normalize import pinyin_aliases


@nb.njit(nogil=True)  # not cached: the cache would tie it to one module name
def _reference_typo(codes, offsets, scores, targets, table, level_start, block, p, pool_t, pool_s, count,  # type: ignore[no-untyped-def]  # noqa: E501
          penalty):
    """Add completions of every prefix one edit away from ``p``: the keys ``k`` with
    ``funnel.text.prefix_typo_distance(p, k) <= MAX_TYPO_EDITS`` (the shared typo rule; a
    test checks this search against that distance).

    It enumerates ``p``'s one-edit variants in the index rather than scoring every key: the
    edit must sit at or before the first position where ``p`` leaves the index, and
    substituted or inserted characters are only those the index has at that node, so the
    work is bounded by the node fan-out, not the alphabet.
    """
    m = p.shape[0]
    n = offsets.shape[0] - 1
    los = np.zeros(m + 1, np.int64)
    his = np.zeros(m + 1, np.int64)
    his[0] = n
    f = 0
    for i in range(1, m + 1):
        lo, hi = _kernels.prefix_range(codes, offsets, p, i, los[i - 1], his[i - 1])
        if lo >= hi:
            break
        los[i] = lo
        his[i] = hi
        f = i
    buf = np.empty(m + 1, p.dtype)
    last = min(f, m - 1)
    for i in range(last, -1, -1):
        lo0 = los[i]
        hi0 = his[i]
        for j in range(i):
            buf[j] = p[j]
        # deletion of p[i]
        for j in range(i + 1, m):
            buf[j - 1] = p[j]
        if m - 1 > 0:
            a, b = _kernels.prefix_range(codes, offsets, buf, m - 1, lo0, hi0)
            if a < b:
                count = _kernels._gather(a, b, scores, targets, table, level_start, block,
                                pool_t, pool_s, count, penalty)
        # transposition of p[i], p[i+1]
        if i + 1 < m and p[i] != p[i + 1]:
            for j in range(i, m):
                buf[j] = p[j]
            buf[i] = p[i + 1]
            buf[i + 1] = p[i]
            a, b = _kernels.prefix_range(codes, offsets, buf, m, lo0, hi0)
            if a < b:
                count = _kernels._gather(a, b, scores, targets, table, level_start, block,
                                pool_t, pool_s, count, penalty)
        # substitution and insertion with each child character of node p[:i]
        j = lo0
        while j < hi0:
            start = offsets[j]
            if offsets[j + 1] - start <= i:
                j += 1
                continue
            c = codes[start + i]
            buf[i] = c
            clo, chi = _kernels.prefix_range(codes, offsets, buf, i + 1, j, hi0)
            if c != p[i]:
                for t in range(i + 1, m):
                    buf[t] = p[t]
                a, b = _kernels.prefix_range(codes, offsets, buf, m, clo, chi)
                if a < b:
                    count = _kernels._gather(a, b, scores, targets, table, level_start, block,
                                    pool_t, pool_s, count, penalty)
            for t in range(i, m):
                buf[t + 1] = p[t]
            a, b = _kernels.prefix_range(codes, offsets, buf, m + 1, clo, chi)
            if a < b:
                count = _kernels._gather(a, b, scores, targets, table, level_start, block,
                                pool_t, pool_s, count, penalty)
            j = max(chi, j + 1)
    return count


def _reference_complete(qc: QueryCompleter, prefix: str, k: int) -> tuple[list[str], np.ndarray]:
    """What ``complete`` returned before the trie: exact range by binary search over every
    key, typo fill by the old kernel (no user context)."""
    p = _encode(prefix, qc.codes_.dtype)
    n = qc.offsets_.shape[0] - 1
    pool_t = np.empty(max(qc.candidates, k), np.int64)
    pool_s = np.empty(max(qc.candidates, k), np.float64)
    lo, hi = _kernels.prefix_range(qc.codes_, qc.offsets_, p, p.shape[0], 0, n)
    count = 0
    if lo < hi:
        count = _kernels._gather(lo, hi, qc.scores_, qc.targets_, qc.table_, qc.level_start_,
                                 qc.block_size, pool_t, pool_s, 0, 1.0)
    out_t = np.empty(k, np.int64)
    out_s = np.empty(k, np.float64)
    no_cats = np.empty(0, np.int32)
    final = _kernels._rescore(pool_t, pool_s, count, qc.cats_, qc.mkts_, no_cats, -1, 0.0, 0.0)
    n_out = n_exact = _kernels._select(pool_t, final, count, k, out_t, out_s, 0, 0)
    if n_out < k and n_out < qc.typo_below and p.shape[0] >= qc.typo_min_len:
        count = _reference_typo(qc.codes_, qc.offsets_, qc.scores_, qc.targets_, qc.table_,
                                qc.level_start_, qc.block_size, p, pool_t, pool_s, 0,
                                float(qc.typo_penalty))
        final = _kernels._rescore(pool_t, pool_s, count, qc.cats_, qc.mkts_, no_cats, -1, 0.0,
                                  0.0)
        n_out = _kernels._select(pool_t, final, count, k, out_t, out_s, n_out, n_exact)
    return qc._keys(out_t[:n_out]), out_s[:n_out]


def _typo_pool(qc: QueryCompleter, prefix: str, old: bool) -> set[tuple[int, float]]:
    """Every (target, score) a one-edit search gathers (the pool is big enough for all)."""
    p = _encode(prefix, qc.codes_.dtype)
    pool_t = np.empty(1 << 14, np.int64)
    pool_s = np.empty(1 << 14, np.float64)
    head = (qc.codes_, qc.offsets_, qc.scores_, qc.targets_, qc.table_, qc.level_start_,
            qc.block_size)
    if old:
        count = _reference_typo(*head, p, pool_t, pool_s, 0, 0.5)
    else:
        count = _kernels._typo(*head, qc.trie_chars_, qc.trie_nodes_, p, pool_t, pool_s, 0, 0.5)
    assert count < pool_t.shape[0]
    return set(zip(pool_t[:count].tolist(), pool_s[:count].tolist(), strict=True))


def _fixed_log(n: int = 4000, seed: int = 7) -> tuple[list[str], np.ndarray]:
    """Syllable words in one- to three-word queries, 5% Chinese (pinyin aliases), tied scores."""
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bdklmnst" for v in "aeiou"]
    ends = ["", "n", "s"]
    words = sorted({"".join(rng.choice(syllables, rng.integers(1, 4))) + str(rng.choice(ends))
                    for _ in range(300)})
    zh = list("北京上海酒店民宿公寓")
    queries: set[str] = set()
    while len(queries) < n:
        if rng.random() < 0.05:
            queries.add("".join(rng.choice(zh, rng.integers(2, 5))))
        else:
            queries.add(" ".join(rng.choice(words, rng.integers(1, 4))))
    out = sorted(queries)
    return out, rng.integers(1, 30, len(out)).astype(float)


def _one_edit(s: str, kind: int, i: int, c: str) -> str:
    """``s`` with one edit at ``i``: substitute, delete, insert ``c``, or swap with i + 1."""
    if kind == 0:
        return s[:i] + c + s[i + 1 :]
    if kind == 1:
        return s[:i] + s[i + 1 :]
    if kind == 2:
        return s[:i] + c + s[i:]
    return s[:i] + s[i + 1 : i + 2] + s[i] + s[i + 2 :]


def _typo_prefixes(queries: list[str], count: int, seed: int = 11) -> list[str]:
    """One-edit prefixes (every kind, every position including the first) of queries and of
    their pinyin aliases."""
    rng = np.random.default_rng(seed)
    sources = [a for q in queries if not q.isascii() for a in pinyin_aliases(q)]
    sources += [queries[i] for i in rng.choice(len(queries), count)]
    out = []
    for s in sources:
        cut = s[: int(rng.integers(4, 10))]
        i = int(rng.integers(0, len(cut)))
        out.append(_one_edit(cut, int(rng.integers(0, 4)), i, str(rng.choice(list("abeknsu ")))))
    return sorted({p for p in out if len(p) >= 4})


Fixed = tuple[list[str], np.ndarray, list[str]]


@pytest.fixture(scope="module")
def fixed() -> Fixed:
    queries, scores = _fixed_log()
    return queries, scores, _typo_prefixes(queries, 600)


@pytest.mark.parametrize(("block", "typo_below"), [(32, 1), (2, 1), (8, 4)])
def test_completions_equal_the_old_search_on_a_fixed_set(fixed: Fixed, block: int,
                                                         typo_below: int) -> None:
    queries, scores, prefixes = fixed
    qc = QueryCompleter(block_size=block, typo_below=typo_below).fit(queries, scores)
    assert len(qc.trie_chars_) > 1  # the walk goes through listed nodes, not only leaves
    found = 0
    for p in prefixes:
        got, got_s = qc.complete(p, 10, normalize=False)
        want, want_s = _reference_complete(qc, p, 10)
        assert got == want, p
        assert np.array_equal(got_s, want_s), p
        found += bool(got)
    assert found > 0.6 * len(prefixes)  # typo recall on this set, not vacuous


@pytest.mark.parametrize("block", [1, 32])
def test_typo_pool_equals_the_old_search(fixed: Fixed, block: int) -> None:
    """The whole candidate pool, not only its top 10: same variants reached, same scores."""
    queries, scores, prefixes = fixed
    qc = QueryCompleter(block_size=block).fit(queries, scores)
    for p in prefixes[::3]:
        assert _typo_pool(qc, p, old=False) == _typo_pool(qc, p, old=True), p


def _trie_string(qc: QueryCompleter, path: list[int]) -> str:
    return "".join(chr(int(qc.trie_chars_[v])) for v in path[1:])


@pytest.mark.parametrize("block", [1, 3])
def test_trie_nodes_are_the_key_ranges_of_their_strings(block: int) -> None:
    queries, scores = _fixed_log(600, seed=2)
    qc = QueryCompleter(block_size=block).fit(queries, scores)
    keys = [qc.key(j) for j in range(len(qc.targets_))]
    nodes = qc.trie_nodes_
    stack = [[0]]
    while stack:
        path = stack.pop()
        v = path[-1]
        lo, hi, first, num = nodes[v].tolist()
        s = _trie_string(qc, path)
        assert [j for j, key in enumerate(keys) if key.startswith(s)] == list(range(lo, hi))
        assert (first >= 0) == (hi - lo > block)
        if first >= 0:
            kids = list(range(first, first + num))
            assert list(qc.trie_chars_[kids]) == sorted(set(qc.trie_chars_[kids].tolist()))
            tail = sum(nodes[u, 1] - nodes[u, 0] for u in kids)
            assert tail == sum(1 for j in range(lo, hi) if len(keys[j]) > len(s))
            stack.extend(path + [u] for u in kids)


@st.composite
def _typed(draw: st.DrawFn) -> tuple[list[str], str]:
    keys = draw(st.lists(st.text("abcé ", min_size=1, max_size=7), min_size=1, max_size=16,
                         unique=True))
    source = draw(st.sampled_from(keys))
    cut = source[: draw(st.integers(1, len(source)))]
    kind = draw(st.integers(0, 3))
    i = draw(st.integers(0, len(cut) - 1))
    return keys, _one_edit(cut, kind, i, draw(st.sampled_from("abcé ")))


@settings(max_examples=300, deadline=None)
@given(_typed(), st.sampled_from([1, 2, 32]))
def test_one_edit_prefix_finds_every_key_within_one_edit(case: tuple[list[str], str],
                                                          block: int) -> None:
    """Brute force over the shared typo rule: with no exact completion, the completions are
    exactly the keys with a prefix one edit from the typed one, at ``penalty`` x score."""
    keys, prefix = case
    assume(prefix)
    scores = np.arange(1, len(keys) + 1, dtype=float)
    qc = QueryCompleter(candidates=64, block_size=block, typo_min_len=1, typo_penalty=0.5,
                        pinyin=False).fit(keys, scores)
    got, got_s = qc.complete(prefix, 64, normalize=False)
    exact = {k for k in keys if k.startswith(prefix)}
    if exact:
        assert set(got) == exact
        return
    want = {k: 0.5 * s for k, s in zip(keys, scores, strict=True)
            if text.prefix_typo_distance(prefix, k) <= text.MAX_TYPO_EDITS}
    assert dict(zip(got, got_s.tolist(), strict=True)) == want


def test_old_format_fails_with_a_rebuild_hint(tmp_path: Path) -> None:
    qc = QueryCompleter().fit(["nike shoes", "nike air"], [2.0, 1.0])
    qc.save(tmp_path)
    cfg = tmp_path / "config.json"
    meta = json.loads(cfg.read_text())
    meta["format"] = "funnel.suggest.completion/1"
    cfg.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="rebuild the suggestion index") as err:
        QueryCompleter.load(tmp_path)
    assert "\n" not in str(err.value)


def test_trie_is_counted_in_nbytes() -> None:
    queries, scores = _fixed_log(500, seed=3)
    qc = QueryCompleter(block_size=4).fit(queries, scores)
    trie = qc.trie_chars_.nbytes + qc.trie_nodes_.nbytes
    assert trie > 0
    without = sum(getattr(qc, f"{a}_").nbytes for a in ("codes", "offsets", "scores", "targets",
                                                        "cats", "mkts", "table", "level_start"))
    assert qc.nbytes == without + trie
