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


def fuzzy_match(term: str, item_terms: frozenset[str], threshold: float = 0.5) -> bool:
    """Whether ``term`` is in ``item_terms`` exactly, as a typed prefix, or within a typo."""
    if term in item_terms:
        return True
    if len(term) >= 3 and any(other.startswith(term) for other in item_terms):
        return True  # a word still being typed ("par" for "paris")
    if len(term) < 4:  # too short to tell a typo from another word
        return False
    grams = _trigrams(term)
    for other in item_terms:
        if abs(len(other) - len(term)) > 2:
            continue
        og = _trigrams(other)
        if len(grams & og) / len(grams | og) >= threshold:
            return True
    return False


def query_match_features(
    queries: Sequence[str | None],
    titles: Sequence[str | None],
    categories: Sequence[str | None],
    brands: Sequence[str | None],
    markets: Sequence[str | None],
) -> dict[str, np.ndarray]:
    """One row per (query, item) pair; all inputs aligned. Returns float32 columns."""
    n = len(queries)
    out = {name: np.zeros(n, dtype=np.float32) for name in QUERY_MATCH_FEATURES}
    for r in range(n):
        q = terms(queries[r])
        if not q:
            continue
        out["qm_has_query"][r] = 1.0
        cat, brand, market = terms(categories[r]), terms(brands[r]), terms(markets[r])
        item_terms = terms(titles[r]) | cat | brand | market
        exact = sum(t in item_terms for t in q)
        fuzzy = sum(fuzzy_match(t, item_terms) for t in q)
        out["qm_term_share"][r] = exact / len(q)
        out["qm_fuzzy_share"][r] = fuzzy / len(q)
        out["qm_category"][r] = float(bool(cat) and cat <= q)
        out["qm_brand"][r] = float(bool(brand) and brand <= q)
        out["qm_market"][r] = float(bool(market) and market <= q)
    return out
