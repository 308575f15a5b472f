"""Lexical recall's view of :mod:`funnel.text`: index terms, fuzzy words, query keys.

The analysis itself (normalisation, the CJK unigram + bigram policy, the plural rule) is the
shared analyzer's, so BM25, the ranker's query-match features and suggestion see the same
tokens. What is recall's own is which words it fuzzes: stemmed latin words, matched against
stemmed index terms.
"""

from __future__ import annotations

from funnel import text
from funnel.text import is_cjk

__all__ = ["analyze", "is_cjk", "normalize_query", "words"]


def normalize_query(query: str) -> str:
    """Canonical form of a query string (the key of query -> items lists)."""
    return text.normalize(query)


def analyze(value: str | None) -> list[str]:
    """Tokens of ``value``: stemmed latin words, and CJK unigrams + bigrams."""
    return text.terms(value)


def words(value: str | None) -> list[str]:
    """The query's words before n-gramming, latin ones stemmed (what typo tolerance fuzzes)."""
    return [w if is_cjk(w) else text.stem(w) for w in text.words(value)]
