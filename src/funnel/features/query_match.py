"""Query-item text match features, the same function for training rows and serving requests.

A search ranker needs to know whether a candidate matches the query at all; learned crosses of
whole query strings do not generalize to unseen queries, these do. For each (query, item) pair:

- ``qm_term_share``: share of query terms found among the item's terms (title, category, brand,
  market), exact after normalization;
- ``qm_fuzzy_share``: the same, counting a term as found when an item term is within a small
  character-trigram distance (typos, plurals) or starts with it (a word still being typed);
- ``qm_category``, ``qm_brand``, ``qm_market``: whether the query names the item's category,
  brand or market (1/0);
- ``qm_has_query``: 1 for searches, 0 for browse (all other features are then 0).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

QUERY_MATCH_FEATURES = (
    "qm_term_share",
    "qm_fuzzy_share",
    "qm_category",
    "qm_brand",
    "qm_market",
    "qm_has_query",
)

_SPLIT = re.compile(r"[^\w]+", re.UNICODE)


@lru_cache(maxsize=200_000)
def terms(text: str | None) -> frozenset[str]:
    """Case- and width-folded word terms of ``text`` (CJK words are kept whole)."""
    if not text:
        return frozenset()
    folded = unicodedata.normalize("NFKC", text).casefold()
    return frozenset(t for t in _SPLIT.split(folded) if t)


@lru_cache(maxsize=200_000)
def _trigrams(term: str) -> frozenset[str]:
    padded = f"#{term}#"
    return frozenset(padded[i : i + 3] for i in range(max(1, len(padded) - 2)))


@lru_cache(maxsize=1 << 20)
def _close(term: str, other: str, threshold: float = 0.5) -> bool:
    """``other`` starts with ``term`` (still being typed) or is a typo away from it."""
    if len(term) >= 3 and other.startswith(term):
        return True  # a word still being typed ("par" for "paris")
    if len(term) < 4 or abs(len(other) - len(term)) > 2:
        return False  # too short to tell a typo from another word, or too different
    grams, og = _trigrams(term), _trigrams(other)
    return len(grams & og) / len(grams | og) >= threshold


def fuzzy_match(term: str, item_terms: frozenset[str]) -> bool:
    """Whether ``term`` is in ``item_terms`` exactly, as a typed prefix, or within a typo."""
    return term in item_terms or any(_close(term, other) for other in item_terms)


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
