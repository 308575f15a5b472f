"""Field-boosted BM25 postings with precomputed impacts, and their thread-safe top-k search.

One posting list per (field, term): rows ascending (int32) and the score the row gets from that
term, ``boost_f * BM25`` (float32), computed once at build time with tantivy's BM25 (k1=1.2,
b=0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)), average field length = field tokens / N),
so a query only adds numbers. Field length is the exact token count (tantivy quantises it
above 39 tokens; below that the two agree exactly).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from funnel.recall._bm25_kernels import fuzzy_expand, search_topk
from funnel.recall.text import analyze

K1 = 1.2
B = 0.75


def bm25(tf: np.ndarray, length: np.ndarray, df: np.ndarray, n_docs: int, avg_len: float,
         ) -> np.ndarray:
    """tantivy's BM25 contribution of one term to one field (float64, element-wise)."""
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    norm = K1 * (1.0 - B + B * length / avg_len) if avg_len > 0 else K1 * (1.0 - B)
    return idf * (1.0 + K1) * tf / (tf + norm)


def _analyse_column(values: Sequence[str | None], vocab: dict[str, int],
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, term id, term frequency) of every distinct term of every row, rows ascending.

    Each distinct string is analysed once (brands and categories repeat a lot).
    """
    seen: dict[str, int] = {}
    inverse = np.fromiter(
        (seen.setdefault(v or "", len(seen)) for v in values), dtype=np.int64, count=len(values)
    )
    u_terms: list[int] = []
    u_tfs: list[int] = []
    u_count = np.zeros(len(seen), dtype=np.int64)
    for u, text in enumerate(seen):
        counts = Counter(analyze(text))
        u_count[u] = len(counts)
        for tok, tf in counts.items():
            u_terms.append(vocab.setdefault(tok, len(vocab)))
            u_tfs.append(tf)
    u_start = np.concatenate([[0], np.cumsum(u_count)[:-1]]).astype(np.int64)
    per_row = u_count[inverse]
    rows = np.repeat(np.arange(len(values), dtype=np.int64), per_row)
    row_start = np.cumsum(per_row) - per_row
    pos = np.repeat(u_start[inverse] - row_start, per_row) + np.arange(rows.shape[0])
    terms = np.asarray(u_terms, dtype=np.int64)[pos] if pos.size else pos
    tfs = np.asarray(u_tfs, dtype=np.int64)[pos] if pos.size else pos
    return rows, terms, tfs


@dataclass(frozen=True)
class Postings:
    """CSR posting lists; list ``f * n_terms + t`` holds field ``f``'s rows containing term t."""

    terms: list[str]
    offsets: np.ndarray  # (n_fields * n_terms + 1,) int64
    docs: np.ndarray  # (n_postings,) int32
    impacts: np.ndarray  # (n_postings,) float32
    n_rows: int

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    @property
    def n_fields(self) -> int:
        return (self.offsets.shape[0] - 1) // max(self.n_terms, 1)


def build_postings(columns: Sequence[Sequence[str | None]], boosts: Sequence[float],
                   ) -> Postings:
    """Analyse each field column (same row count) and score every posting with its field boost."""
    n_rows = len(columns[0]) if columns else 0
    vocab: dict[str, int] = {}
    analysed = [_analyse_column(col, vocab) for col in columns]
    n_terms = len(vocab)
    parts_list, parts_docs, parts_imp = [], [], []
    for f, ((rows, terms, tfs), boost) in enumerate(zip(analysed, boosts, strict=True)):
        length = np.bincount(rows, weights=tfs, minlength=n_rows)
        avg_len = float(length.sum()) / n_rows if n_rows else 0.0
        df = np.bincount(terms, minlength=n_terms)
        impact = boost * bm25(tfs.astype(np.float64), length[rows], df[terms], n_rows, avg_len)
        parts_list.append(f * n_terms + terms)
        parts_docs.append(rows)
        parts_imp.append(impact)
    lists = np.concatenate(parts_list) if parts_list else np.empty(0, np.int64)
    order = np.argsort(lists, kind="stable")  # rows stay ascending inside each list
    counts = np.bincount(lists, minlength=len(columns) * n_terms)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    docs = np.concatenate(parts_docs)[order].astype(np.int32) if parts_docs else lists
    impacts = np.concatenate(parts_imp)[order].astype(np.float32) if parts_imp else lists
    terms_list = [""] * n_terms
    for tok, t in vocab.items():
        terms_list[t] = tok
    return Postings(terms_list, offsets, docs.astype(np.int32), impacts.astype(np.float32),
                    n_rows)


class Bm25Searcher:
    """Top-k over :class:`Postings`: exact terms score by impact, fuzzy groups by a constant.

    Thread-safe: a search allocates its own block-sized accumulator (``block`` rows, 64 KB by
    default) and the kernel releases the GIL. Fuzzy expansions are cached (LRU, under a lock)
    per (word, distance).
    """

    def __init__(self, postings: Postings, market_codes: np.ndarray, *,
                 cache_size: int = 4096, block: int = 16384) -> None:
        self.postings = postings
        self.market_codes = np.ascontiguousarray(market_codes, dtype=np.int32)
        self.block = block
        # largest impact of each list: the bound MaxScore needs
        starts = np.minimum(postings.offsets[:-1], max(postings.impacts.shape[0] - 1, 0))
        self.list_max = (np.maximum.reduceat(postings.impacts, starts)
                         if postings.impacts.size else np.zeros(starts.shape[0], np.float32))
        self.list_max[np.diff(postings.offsets) == 0] = 0.0
        self.term_ids = {t: i for i, t in enumerate(postings.terms)}
        width = max((len(t) for t in postings.terms), default=0)
        self._codes = np.zeros((postings.n_terms, width), dtype=np.int32)
        for i, t in enumerate(postings.terms):
            self._codes[i, : len(t)] = [ord(c) for c in t]
        self._lengths = np.array([len(t) for t in postings.terms], dtype=np.int64)
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def expand(self, word: str, distance: int) -> np.ndarray:
        """Term ids within ``distance`` edits of ``word`` (the word itself included)."""
        key = (word, distance)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        codes = np.array([ord(c) for c in word], dtype=np.int32)
        found = fuzzy_expand(self._codes, self._lengths, codes, distance)
        with self._lock:
            self._cache[key] = found
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found

    def search(
        self,
        tokens: Sequence[str],
        fuzzy: Sequence[tuple[str, int]],
        field_weights: Sequence[float],
        fuzzy_weights: Sequence[float],
        k: int,
        market: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) best first for ``tokens`` in the fields with weight > 0.

        ``fuzzy`` holds (word, distance); field f adds ``fuzzy_weights[f]`` once per word when
        it contains any term within that distance. ``market`` -1 means every row.
        """
        p = self.postings
        offsets, n_terms = p.offsets, p.n_terms
        ids = [self.term_ids[t] for t in tokens if t in self.term_ids]
        exact = [
            f * n_terms + t for f, w in enumerate(field_weights) if w > 0 for t in ids
            if offsets[f * n_terms + t + 1] > offsets[f * n_terms + t]
        ]
        fuzzy_lists: list[int] = []
        group = [0]
        group_score: list[float] = []
        expansions = [self.expand(w, d) for w, d in fuzzy]
        for f, w in enumerate(fuzzy_weights):
            if w <= 0:
                continue
            for found in expansions:
                lists = [f * n_terms + int(t) for t in found
                         if offsets[f * n_terms + t + 1] > offsets[f * n_terms + t]]
                if lists:
                    fuzzy_lists.extend(lists)
                    group.append(len(fuzzy_lists))
                    group_score.append(w)
        if not exact and not fuzzy_lists:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        exact = np.asarray(exact, dtype=np.int64)
        return search_topk(
            offsets, p.docs, p.impacts, exact,
            np.asarray(fuzzy_lists, dtype=np.int64), np.asarray(group, dtype=np.int64),
            np.asarray(group_score, dtype=np.float32), self.market_codes, market, k,
            self.block, self.list_max[exact],
        )
