"""Query-item text match features, the same function for training rows and serving requests.

A search ranker needs to know whether a candidate matches the query at all; learned crosses of
whole query strings do not generalize to unseen queries, these do. For each (query, item) pair:

- ``qm_term_share``: share of query terms found among the item's terms (title, category, brand,
  market), exact after normalization;
- ``qm_fuzzy_share``: the same, counting a term as found when an item term is a typo of it or
  starts with it (a word still being typed);
- ``qm_category``, ``qm_brand``, ``qm_market``: whether the query names the item's category,
  brand or market (1/0);
- ``qm_has_query``: 1 for searches, 0 for browse (all other features are then 0).

Terms and the typo rule are the shared analyzer's (:mod:`funnel.text`), the ones lexical recall
and suggestion use: a query term the ranker calls a typo is one recall also found as a typo.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from funnel import text

QUERY_MATCH_FEATURES = (
    "qm_term_share",
    "qm_fuzzy_share",
    "qm_category",
    "qm_brand",
    "qm_market",
    "qm_has_query",
)


@lru_cache(maxsize=200_000)
def terms(value: str | None) -> frozenset[str]:
    """The distinct analyzer terms of ``value`` (:func:`funnel.text.terms`)."""
    return frozenset(text.terms(value))


def fuzzy_match(term: str, item_terms: frozenset[str]) -> bool:
    """Whether ``term`` is in ``item_terms`` exactly, as a typed prefix, or within a typo."""
    return term in item_terms or any(text.is_typed_or_typo(term, other) for other in item_terms)


@lru_cache(maxsize=1 << 18)
def _match_row(
    query: str, title: str | None, category: str | None, brand: str | None, market: str | None
) -> tuple[float, float, float, float, float]:
    """The five match values of one (query, item) pair; cached, since a request scores the same
    pairs twice (search gate and ranker) and popular queries recur."""
    q = terms(query)
    cat, brd, mkt = terms(category), terms(brand), terms(market)
    item_terms = terms(title) | cat | brd | mkt
    exact = sum(t in item_terms for t in q)
    fuzzy = sum(fuzzy_match(t, item_terms) for t in q)
    return (
        exact / len(q),
        fuzzy / len(q),
        float(bool(cat) and cat <= q),
        float(bool(brd) and brd <= q),
        float(bool(mkt) and mkt <= q),
    )


def query_match_features(
    queries: Sequence[str | None],
    titles: Sequence[str | None],
    categories: Sequence[str | None],
    brands: Sequence[str | None],
    markets: Sequence[str | None],
) -> dict[str, np.ndarray]:
    """One row per (query, item) pair; all inputs aligned. Returns float32 columns."""
    n = len(queries)
    out = np.zeros((n, len(QUERY_MATCH_FEATURES)), dtype=np.float32)
    for r in range(n):
        query = queries[r]
        if not query or not terms(query):
            continue
        out[r, :5] = _match_row(query, titles[r], categories[r], brands[r], markets[r])
        out[r, 5] = 1.0
    return {name: out[:, i].copy() for i, name in enumerate(QUERY_MATCH_FEATURES)}


class TermIndex:
    """:func:`query_match_features` for one query against many catalog rows, vectorized.

    A search scores one query against ~1000 candidates; the pairwise function then spends its
    time in a Python loop. Here every item's terms are tokenized once (at load) into CSR arrays
    of vocabulary ids (one per text field), a query term is matched against the vocabulary once
    (cached), and a request is a few numpy gathers over the candidate rows. Values are identical
    to :func:`query_match_features` (the same ``terms``/``fuzzy_match`` rules, the same division).
    """

    def __init__(
        self,
        titles: Sequence[str | None],
        categories: Sequence[str | None],
        brands: Sequence[str | None],
        markets: Sequence[str | None],
        cache_size: int = 4096,
    ) -> None:
        import pandas as pd

        n = len(titles)
        for name, col in (("categories", categories), ("brands", brands), ("markets", markets)):
            if len(col) != n:
                raise ValueError(
                    f"TermIndex: '{name}' has {len(col)} rows; expected {n} (one per title)"
                )
        vocab: dict[str, int] = {}
        fields = []
        for column in (titles, categories, brands, markets):
            # tokenize each distinct text once; rows point at their text's term ids
            codes, uniques = pd.factorize(pd.Series(list(column), dtype=object))
            split = terms.__wrapped__  # bulk: bypass (and do not flush) the request-time cache
            per_text = [[vocab.setdefault(t, len(vocab)) for t in sorted(split(u))]
                        for u in uniques.tolist()]
            ulens = np.array([len(ids) for ids in per_text] + [0], dtype=np.int64)
            uflat = np.array([i for ids in per_text for i in ids], dtype=np.int64)
            ustarts = np.concatenate([[0], np.cumsum(ulens)[:-1]]).astype(np.int64)
            codes = np.where(codes < 0, len(per_text), codes)  # missing text: no terms
            fields.append(_gather_csr(ustarts[codes], ulens[codes], uflat))
        # one CSR over all four fields, each row's entries tagged with their field (0 title,
        # 1 category, 2 brand, 3 market): a request reads two indptr values and one run of
        # entries per candidate, not four of each scattered over a million rows
        self._indptr, self._indices, self._tags = _combine(fields, n)
        self.vocab = vocab
        self._words = list(vocab)
        self._vocabulary = text.Vocabulary(self._words)
        self._n = n
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._n

    def take(self, rows: np.ndarray) -> TermIndex:
        """An index over ``rows`` of this one, in that order (vocabulary and cache shared):
        another snapshot of the same items need not tokenize a million titles again."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= len(self))):
            raise ValueError(
                f"TermIndex.take: 'rows' must be a 1-D array of rows in [0, {len(self)}); "
                f"got shape {rows.shape}"
            )
        out = object.__new__(TermIndex)
        out.__dict__.update(self.__dict__)
        starts = self._indptr[rows]
        out._indptr, take = _csr_positions(starts, self._indptr[rows + 1] - starts)
        out._indices, out._tags = self._indices[take], self._tags[take]
        out._n = len(rows)
        return out

    def _fuzzy_ids(self, term: str) -> np.ndarray:
        """Vocabulary ids an item term must have for ``term`` to fuzzy-match it (cached)."""
        found = self._cache.get(term)
        if found is None:
            found = self._vocabulary.typed_or_typos(term)
            with self._lock:  # requests share the index
                if len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)), None)
                self._cache[term] = found
        return found

    def features(self, query: str | None, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The :data:`QUERY_MATCH_FEATURES` columns of ``query`` against catalog ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (len(rows) and (rows.min() < 0 or rows.max() >= len(self))):
            raise ValueError(
                f"TermIndex.features: 'rows' must be a 1-D array of rows in [0, {len(self)}); "
                f"got shape {rows.shape}"
            )
        n = len(rows)
        out = np.zeros((n, len(QUERY_MATCH_FEATURES)), dtype=np.float32)
        q = terms(query) if query else frozenset()
        if q and n:
            size = len(self._words)
            words = sorted(q)
            exact_id = np.array([self.vocab.get(t, -1) for t in words], dtype=np.int64)
            in_query = np.zeros(size + 1, dtype=np.bool_)
            in_query[exact_id[exact_id >= 0]] = True
            close = np.zeros((len(words), size + 1), dtype=np.bool_)
            for j, t in enumerate(words):
                close[j, self._fuzzy_ids(t)] = True
            exact, fuzzy, have, inside = _match_kernel()(
                self._indptr, self._indices, self._tags, rows, exact_id, close, in_query)
            out[:, 0] = exact / len(q)
            out[:, 1] = fuzzy / len(q)
            # category, brand, market: the query names the field when all its terms are in it
            out[:, 2:5] = ((have > 0) & (inside == have)).T
            out[:, 5] = 1.0
        return {name: out[:, i].copy() for i, name in enumerate(QUERY_MATCH_FEATURES)}


@lru_cache(maxsize=1)
def _match_kernel() -> Any:
    """The per-candidate counts of :meth:`TermIndex.features`, compiled on first use (numba is
    imported only by a server or a test that matches queries against many items)."""
    import numba as nb

    @nb.njit(nogil=True)
    def match_counts(
        indptr: np.ndarray, indices: np.ndarray, tags: np.ndarray, rows: np.ndarray,
        exact_id: np.ndarray, close: np.ndarray, in_query: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # per candidate: query terms found exactly / fuzzily among its terms (each term once),
        # and per field 1..3 (category, brand, market): its terms, and those in the query
        n, n_terms = rows.shape[0], exact_id.shape[0]
        exact = np.zeros(n, np.int64)
        fuzzy = np.zeros(n, np.int64)
        have = np.zeros((3, n), np.int64)
        inside = np.zeros((3, n), np.int64)
        seen_exact = np.zeros(n_terms, np.bool_)
        seen_fuzzy = np.zeros(n_terms, np.bool_)
        for i in range(n):
            r = rows[i]
            seen_exact[:] = False
            seen_fuzzy[:] = False
            for e in range(indptr[r], indptr[r + 1]):
                w = indices[e]
                for j in range(n_terms):
                    if exact_id[j] == w:
                        seen_exact[j] = True
                    if close[j, w]:
                        seen_fuzzy[j] = True
                f = tags[e]
                if f > 0:
                    have[f - 1, i] += 1
                    if in_query[w]:
                        inside[f - 1, i] += 1
            exact[i] = seen_exact.sum()
            fuzzy[i] = seen_fuzzy.sum()
        return exact, fuzzy, have, inside

    return match_counts


def _gather_csr(
    starts: np.ndarray, lens: np.ndarray, flat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, values) of the rows ``flat[starts[i] : starts[i] + lens[i]]``, without a loop."""
    indptr, take = _csr_positions(starts, lens)
    return indptr, flat[take]


def _csr_positions(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, positions) of the rows ``starts[i] : starts[i] + lens[i]`` of a flat array."""
    indptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    total = int(indptr[-1])
    take = np.arange(total, dtype=np.int64) + np.repeat(starts - indptr[:-1], lens)
    return indptr, take


def _combine(
    fields: Sequence[tuple[np.ndarray, np.ndarray]], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One CSR (indptr, int32 vocabulary ids, int8 field tags) from per-field CSRs over the same
    ``n`` rows: row ``r`` holds field 0's entries of ``r``, then field 1's, and so on."""
    lens = np.stack([np.diff(indptr) for indptr, _ in fields]) if fields else np.zeros((0, n))
    lens = lens.astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(lens.sum(0))]).astype(np.int64)
    first = indptr[:-1] + np.cumsum(lens, 0) - lens  # (fields, n): where a field's run starts
    wide = any(len(ids) and ids.max() >= 2**31 for _, ids in fields)
    indices = np.empty(int(indptr[-1]), dtype=np.int64 if wide else np.int32)
    tags = np.empty(int(indptr[-1]), dtype=np.int8)
    for f, (f_ptr, f_ids) in enumerate(fields):
        row_of = np.repeat(np.arange(n), lens[f])
        pos = first[f][row_of] + np.arange(len(f_ids)) - f_ptr[:-1][row_of]
        indices[pos] = f_ids
        tags[pos] = f
    return indptr, indices, tags
