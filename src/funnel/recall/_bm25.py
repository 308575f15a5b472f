"""Field-boosted BM25 postings with precomputed impacts, and their thread-safe top-k search.

One posting list per term: rows ascending (int32), the score the row gets from that term summed
over fields, ``sum_f boost_f * BM25_f`` (float32), and which fields hold it (uint8 mask, for
fuzzy matches, which score per field). Scores are computed once at build time with tantivy's
BM25 (k1=1.2, b=0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)) with df per field, average
field length = field tokens / N), so a query only adds numbers; one list per term rather than
per (field, term) cuts the postings a query reads when titles repeat brand and category.
Field length is the exact token count (tantivy quantises it above 39 tokens; below that the
two agree exactly).
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
    """CSR posting lists, one per term, over all fields at once.

    A row's impact is the sum over fields of ``boost_f * BM25_f(term, row)`` and its mask has
    bit f set when field f holds the term (fuzzy matching scores per field).
    """

    terms: list[str]
    offsets: np.ndarray  # (n_terms + 1,) int64
    docs: np.ndarray  # (n_postings,) int32
    impacts: np.ndarray  # (n_postings,) float32
    masks: np.ndarray  # (n_postings,) uint8
    n_rows: int

    @property
    def n_terms(self) -> int:
        return len(self.terms)


def build_postings(columns: Sequence[Sequence[str | None]], boosts: Sequence[float],
                   ) -> Postings:
    """Analyse each field column (same row count) and score every posting with its field boost."""
    if len(columns) > 8:
        raise ValueError(f"at most 8 fields fit the uint8 field masks; got {len(columns)}")
    n_rows = len(columns[0]) if columns else 0
    vocab: dict[str, int] = {}
    analysed = [_analyse_column(col, vocab) for col in columns]
    keys, imps, bits = [], [], []
    for f, ((rows, terms, tfs), boost) in enumerate(zip(analysed, boosts, strict=True)):
        length = np.bincount(rows, weights=tfs, minlength=n_rows)
        avg_len = float(length.sum()) / n_rows if n_rows else 0.0
        df = np.bincount(terms, minlength=len(vocab))
        keys.append(terms * max(n_rows, 1) + rows)
        imps.append(boost * bm25(tfs.astype(np.float64), length[rows], df[terms], n_rows,
                                 avg_len))
        bits.append(np.full(rows.shape[0], 1 << f, dtype=np.uint8))
    key = np.concatenate(keys) if keys else np.empty(0, np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if key.size else key
    impacts = (np.add.reduceat(np.concatenate(imps)[order], starts) if key.size
               else np.empty(0, np.float64))
    masks = (np.bitwise_or.reduceat(np.concatenate(bits)[order], starts) if key.size
             else np.empty(0, np.uint8))
    key = key[starts]
    term_of = key // max(n_rows, 1)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(term_of, minlength=len(vocab)))])
    terms_list = [""] * len(vocab)
    for tok, t in vocab.items():
        terms_list[t] = tok
    return Postings(
        terms_list, offsets.astype(np.int64), (key % max(n_rows, 1)).astype(np.int32),
        impacts.astype(np.float32), masks.astype(np.uint8), n_rows,
    )


class Bm25Searcher:
    """Top-k over :class:`Postings`: query tokens score by impact, fuzzy words by field.

    Thread-safe: a search allocates its own block-sized accumulator (``block`` rows, 256 KB by
    default: it stays in L2) and the kernel releases the GIL. Fuzzy expansions are cached (LRU,
    under a lock) per (word, distance).
    """

    def __init__(self, postings: Postings, market_codes: np.ndarray, markets: Sequence[str], *,
                 cache_size: int = 4096, block: int = 65536) -> None:
        self.postings = postings
        self.market_codes = np.ascontiguousarray(market_codes, dtype=np.int32)
        self.market_id = {m: i for i, m in enumerate(markets)}
        self.block = block
        self.term_ids = {t: i for i, t in enumerate(postings.terms)}
        # per list: the largest impact and the fields it occurs in (MaxScore bounds)
        nonempty = np.diff(postings.offsets) > 0
        starts = postings.offsets[:-1][nonempty]
        self.list_max = np.zeros(postings.n_terms, dtype=np.float32)
        self.list_fields = np.zeros(postings.n_terms, dtype=np.uint8)
        if starts.size:
            self.list_max[nonempty] = np.maximum.reduceat(postings.impacts, starts)
            self.list_fields[nonempty] = np.bitwise_or.reduceat(postings.masks, starts)
        width = max((len(t) for t in postings.terms), default=0)
        self._codes = np.zeros((postings.n_terms, width), dtype=np.int32)
        for i, t in enumerate(postings.terms):
            self._codes[i, : len(t)] = [ord(c) for c in t]
        self._lengths = np.array([len(t) for t in postings.terms], dtype=np.int64)
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._mask_scores: dict[tuple[float, ...], np.ndarray] = {}
        self._warm_up()

    def _warm_up(self) -> None:
        """Load the compiled kernels now (~1 s) rather than in the first request."""
        p, i64, f32 = self.postings, np.empty(0, np.int64), np.empty(0, np.float32)
        search_topk(p.offsets, p.docs, p.impacts, p.masks, np.zeros(8, np.float32), i64, f32,
                    f32, i64, np.zeros(1, np.int64), np.empty(0, np.float64),
                    self.market_codes, -1, 1, self.block)
        fuzzy_expand(self._codes, self._lengths, np.zeros(1, np.int32), 1)

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
        fuzzy_weights: Sequence[float],
        k: int,
        market: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) best first for ``tokens`` (field boosts are in the impacts).

        ``fuzzy`` holds (word, distance): field f adds ``fuzzy_weights[f]`` once per word when
        it holds any term within that distance. ``market`` -1 means every row.
        """
        key = tuple(fuzzy_weights)
        mask_score = self._mask_scores.get(key)
        if mask_score is None:  # fuzzy score of each set of fields (a bit mask)
            mask_score = np.array(
                [sum(w for f, w in enumerate(key) if m >> f & 1) for m in range(1 << len(key))],
                dtype=np.float32,
            )
            self._mask_scores[key] = mask_score
        w_imp: dict[int, float] = {}
        w_fz: dict[int, float] = {}
        for t in tokens:
            i = self.term_ids.get(t)
            if i is not None:
                w_imp[i] = 1.0
        groups: list[np.ndarray] = []
        if mask_score[-1] > 0:
            for word, distance in fuzzy:
                found = self.expand(word, distance)
                if len(found) == 1:  # the common case: fused with that term's own list
                    w_fz[int(found[0])] = w_fz.get(int(found[0]), 0.0) + 1.0
                elif len(found) > 1:
                    groups.append(found)
        lists = np.array(sorted(set(w_imp) | set(w_fz)), dtype=np.int64)
        if not lists.size and not groups:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        wi = np.array([w_imp.get(int(t), 0.0) for t in lists], dtype=np.float32)
        wf = np.array([w_fz.get(int(t), 0.0) for t in lists], dtype=np.float32)
        bound = [float(wi[j]) * float(self.list_max[t]) + float(wf[j])
                 * float(mask_score[self.list_fields[t]]) for j, t in enumerate(lists)]
        group_off = [0]
        for found in groups:
            group_off.append(group_off[-1] + len(found))
            fields = int(np.bitwise_or.reduce(self.list_fields[found]))
            bound.append(float(mask_score[fields]))
        group_lists = (np.concatenate(groups) if groups else np.empty(0, np.int64))
        p = self.postings
        return search_topk(
            p.offsets, p.docs, p.impacts, p.masks, mask_score, lists, wi, wf,
            group_lists.astype(np.int64), np.asarray(group_off, dtype=np.int64),
            np.asarray(bound, dtype=np.float64), self.market_codes, market,
            min(k, max(p.n_rows, 1)), self.block,
        )
