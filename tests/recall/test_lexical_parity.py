"""Our BM25 index against tantivy (same analysed text) and against a brute-force Python BM25."""

from __future__ import annotations

import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _strings import osa_distance
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.recall._bm25_tantivy import TantivyBM25
from funnel.recall.lexical import FIELDS, LexicalIndex
from funnel.recall.text import analyze

K = 100


def tantivy_of(items: pa.Table) -> TantivyBM25:
    analysed = {f: [" ".join(analyze(v)) for v in items.column(f).to_pylist()] for f in FIELDS}
    return TantivyBM25.build(analysed, items.column("market").to_pylist())


def tantivy_search(ref: TantivyBM25, index: LexicalIndex, text: str, k: int,
                   market: str | None = None) -> tuple[list[str], np.ndarray]:
    tokens, fuzzy = index._parse(text)
    rows, scores = ref.search(tokens, fuzzy, index.field_boosts, index.fuzzy_weight, k, market)
    return index.ids_[rows].tolist(), scores


def assert_same_topk(ours, ref_ids: list[str], ref_scores: np.ndarray, where: str) -> None:
    """Same scores (1e-4 relative) and the same ids, except among ties with the k-th score."""
    assert len(ours) == len(ref_ids), where
    if not ref_ids:
        return
    np.testing.assert_allclose(ours.scores, ref_scores, rtol=1e-4, err_msg=where)
    kth = float(ref_scores[-1])
    above = {i for i, s in zip(ref_ids, ref_scores, strict=True) if s > kth * (1 + 1e-4)}
    ours_above = {
        i for i, s in zip(ours.item_ids.tolist(), ours.scores, strict=True)
        if s > kth * (1 + 1e-4)
    }
    assert ours_above == above, where
    # inside the result, equal scores are ordered by row: deterministic
    assert np.all(np.diff(ours.scores) <= 0), where


@pytest.fixture(scope="module")
def catalog() -> tuple[pa.Table, list[str]]:
    tables = generate_tables(MarketplaceConfig(n_events=4000, n_items=3000, seed=3))
    events = tables["events"]
    queries = events.filter(pc.equal(events.column("event_type"), "search")).column("query")
    qs = sorted({q for q in queries.to_pylist() if q})
    return tables["items"], qs


@pytest.fixture(scope="module")
def fitted(catalog):
    items, _ = catalog
    return LexicalIndex().fit(items), tantivy_of(items)


def typos(words: list[str], rng: np.random.Generator) -> list[str]:
    """A deletion, a substitution, an adjacent transposition and an insertion of each word."""
    out = []
    for w in words:
        i = int(rng.integers(1, len(w) - 1))
        out += [w[:i] + w[i + 1:], w[:i] + "z" + w[i + 1:], w[:i - 1] + w[i] + w[i - 1] + w[i + 1:],
                w[:i] + "q" + w[i:]]
    return out


def test_parity_with_tantivy_on_a_generated_catalog(catalog, fitted):
    items, queries = catalog
    ours, ref = fitted
    words = sorted({w for t in items.column("title").to_pylist() for w in analyze(t)
                    if w.isascii() and len(w) >= 5})
    extra = typos(words[:40], np.random.default_rng(0)) + ["", "!!!", "zzzzqqqq", "北京"]
    assert len(queries) > 100
    for q in queries + extra:
        assert_same_topk(ours.search(q, k=K) if q else _empty(), *tantivy_search(ref, ours, q, K),
                         where=q)
    n_hits = sum(len(ours.search(q, k=K)) > 0 for q in extra[:-4])
    assert n_hits == len(extra) - 4  # every typo of a catalog word still finds something


def _empty():
    from funnel.recall.base import Candidates

    return Candidates.empty()


def test_parity_with_tantivy_under_a_market_filter_and_small_k(catalog, fitted):
    items, queries = catalog
    ours, ref = fitted
    markets = sorted(set(items.column("market").to_pylist()))
    for q in queries[::3]:
        for market in markets[:3]:
            got = ours.search(q, k=20, market=market)
            assert_same_topk(got, *tantivy_search(ref, ours, q, 20, market), where=q)
            market_of = dict(zip(items.column("item_id").to_pylist(),
                                 items.column("market").to_pylist(), strict=True))
            assert all(market_of[i] == market for i in got.item_ids)
    assert len(ours.search(queries[0], k=5, market="atlantis")) == 0


def test_field_lengths_below_40_tokens_score_exactly_like_tantivy():
    # tantivy stores field lengths in one byte, exact below 40 tokens: titles 1..39 tokens long
    n = 39
    items = pa.table({
        "item_id": [f"i{i}" for i in range(n)],
        "title": ["target " + " ".join(f"w{j}" for j in range(i)) for i in range(n)],
        "brand": [""] * n, "category": ["c"] * n, "market": ["m"] * n,
    })
    ours = LexicalIndex().fit(items)
    got = ours.search("target", k=n)
    ref_ids, ref_scores = tantivy_search(tantivy_of(items), ours, "target", n)
    assert got.item_ids.tolist() == ref_ids == [f"i{i}" for i in range(n)]  # shorter is better
    np.testing.assert_allclose(got.scores, ref_scores, rtol=1e-5)


# ---- brute force ---------------------------------------------------------------------------


def brute_scores(items: pa.Table, index: LexicalIndex, text: str,
                 market: str | None) -> dict[int, float]:
    """Row -> score by the formula, one document at a time, in float64."""
    n = items.num_rows
    tokens, fuzzy = index._parse(text)
    boosts = index.field_boosts
    out: dict[int, float] = {}
    for f in FIELDS:
        docs = [Counter(analyze(v)) for v in items.column(f).to_pylist()]
        avg = sum(sum(c.values()) for c in docs) / n
        for row, counts in enumerate(docs):
            length = sum(counts.values())
            for t in tokens:
                tf = counts.get(t, 0)
                if tf == 0 or boosts[f] <= 0:
                    continue
                df = sum(t in c for c in docs)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                out[row] = out.get(row, 0.0) + boosts[f] * idf * 2.2 * tf / (
                    tf + 1.2 * (0.25 + 0.75 * length / avg))
            for w, dist in fuzzy:
                if boosts[f] > 0 and any(osa_distance(w, t) <= dist for t in counts):
                    out[row] = out.get(row, 0.0) + boosts[f] * index.fuzzy_weight
    markets = items.column("market").to_pylist()
    return {r: s for r, s in out.items() if market is None or markets[r] == market}


WORD = st.text(alphabet="abcs", min_size=1, max_size=7)


@settings(max_examples=60, deadline=None)
@given(
    titles=st.lists(st.lists(WORD, max_size=6).map(" ".join), min_size=1, max_size=12),
    query=st.lists(WORD, min_size=1, max_size=3).map(" ".join),
    market=st.sampled_from([None, "x"]),
    boosts=st.sampled_from([None, {"title": 1.0, "brand": 0.0, "category": 4.0}]),
    block=st.sampled_from([1, 2, 5, 65536]),
    k=st.integers(1, 4),
)
def test_scores_equal_a_brute_force_bm25(titles, query, market, boosts, block, k):
    n = len(titles)
    items = pa.table({
        "item_id": [f"r{i}" for i in range(n)], "title": titles,
        "brand": [titles[(i + 1) % n][:6] for i in range(n)],
        "category": [("abab", "cabs", None)[i % 3] for i in range(n)],
        "market": [("x", "y")[i % 2] for i in range(n)],
    })
    index = LexicalIndex(boosts=boosts).fit(items)
    index.index_.block = block
    expected = brute_scores(items, index, query, market)
    got = index.search(query, k=n, market=market)
    rows = [int(i[1:]) for i in got.item_ids]
    assert set(rows) == {r for r, s in expected.items() if s > 0}
    for r, s in zip(rows, got.scores, strict=True):
        assert s == pytest.approx(expected[r], rel=1e-4)
    order = sorted(rows, key=lambda r: (-got.scores[rows.index(r)], r))
    assert rows == order  # best first, ties by row
    top = index.search(query, k=k, market=market)  # a small k keeps a prefix of the ranking
    assert top.item_ids.tolist() == got.item_ids.tolist()[:k]


def test_block_size_changes_nothing(catalog, fitted):
    # the kernel scores rows block by block; small blocks exercise cursors, MaxScore skipping
    # and the heap across many blocks (the 1M catalog has 16 blocks of 65,536 rows)
    items, queries = catalog
    ours, _ = fitted
    words = sorted({w for t in items.column("title").to_pylist() for w in analyze(t)
                    if w.isascii() and len(w) >= 5})
    probes = queries[::2] + typos(words[:10], np.random.default_rng(1))
    default = ours.index_.block
    try:
        expected = [ours.search(q, k=30, market=m) for q in probes for m in (None, "tokyo")]
        for block in (1, 37, 512):
            ours.index_.block = block
            got = [ours.search(q, k=30, market=m) for q in probes for m in (None, "tokyo")]
            for a, b in zip(expected, got, strict=True):
                assert a.item_ids.tolist() == b.item_ids.tolist()
                assert a.scores.tolist() == b.scores.tolist()
    finally:
        ours.index_.block = default


def test_many_threads_give_the_serial_results(catalog, fitted):
    _, queries = catalog
    ours, _ = fitted
    work = [(q, m) for q in queries for m in (None, "tokyo")] * 3
    serial = [ours.search(q, k=50, market=m) for q, m in work]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda a: ours.search(a[0], k=50, market=a[1]), work))
    for a, b in zip(serial, parallel, strict=True):
        assert a.item_ids.tolist() == b.item_ids.tolist()
        assert a.scores.tolist() == b.scores.tolist()
