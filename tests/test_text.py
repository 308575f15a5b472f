"""One analyzer: recall, query-match and suggestion see the same text and the same typos."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _strings import osa_distance
from funnel import text
from funnel.features import query_match
from funnel.recall import text as recall_text
from funnel.recall.lexical import LexicalIndex
from funnel.suggest import normalize as suggest_text
from funnel.suggest.completion import QueryCompleter

SAMPLES = [
    "",
    "   ",
    "Hotels in PARIS",
    "Café crème à Montréal",  # accents are kept
    "ＮＩＫＥ  Air-Max!!",  # full-width, punctuation
    "Women's shoes",  # apostrophe dropped
    "Straße",  # casefold, not lower
    "北京饭店",
    "北京　希尔顿酒店",  # ideographic space
    "Ｈｉｌｔｏｎ酒店 nike运动鞋",  # mixed CJK and latin, no spaces
    "ｶﾀｶﾅ テスト",  # half-width katakana
    "h&m / c&a -- 50% off #1",  # kept symbols still split words
    "snake_case,comma;semi:colon",
    "\t tab\nnewline\u00a0nbsp\u2028",
    "ﬁ ligature ² ½",  # NFKC compatibility forms
]


@pytest.mark.parametrize("raw", SAMPLES)
def test_every_entry_point_normalises_and_tokenizes_the_same(raw: str) -> None:
    norm = text.normalize(raw)
    assert recall_text.normalize_query(raw) == norm
    assert suggest_text.normalize_query(raw) == norm
    # index terms: lexical recall's tokens, query-match's term set
    assert recall_text.analyze(raw) == text.terms(raw)
    assert query_match.terms(raw) == frozenset(text.terms(raw))
    # words: suggestion's tokens; recall fuzzes the same words, stemmed
    assert suggest_text.tokens(raw) == text.words(raw)
    assert recall_text.words(raw) == [
        w if text.is_cjk(w) else text.stem(w) for w in text.words(raw)
    ]


def test_hand_examples() -> None:
    assert text.normalize("ＮＩＫＥ  Air-Max!!") == "nike air max"
    assert text.normalize("Women's shoes") == "womens shoes"
    assert text.normalize("Café") == "café"
    assert text.words("Ｈｉｌｔｏｎ酒店 nike运动鞋") == ["hilton", "酒店", "nike", "运动鞋"]
    assert text.normalize("h&m") == "h m" and text.normalize("C++ $50") == "c++ $50"
    assert text.words("c++ $50") == ["c", "50"]
    assert text.terms("北京饭店") == ["北", "京", "饭", "店", "北京", "京饭", "饭店"]
    assert text.terms("Hotels in PARIS") == ["hotel", "in", "pari"]
    assert text.terms(None) == text.terms("") == []


def test_the_indexes_hold_the_analyzer_terms() -> None:
    titles = ["Hilton Paris Opera", "北京希尔顿酒店", "Café crème", "Women's shoes"]
    items = pa.table({"item_id": [str(i) for i in range(4)], "title": titles,
                      "brand": ["Hilton", "", "", "Nike"], "category": ["hotel"] * 4,
                      "market": ["fr"] * 4})
    want = {t for v in titles + ["Hilton", "Nike", "hotel"] for t in text.terms(v)}
    bm25 = LexicalIndex().fit(items)
    assert set(bm25.index_.postings.terms) == want
    tindex = query_match.TermIndex(titles, ["hotel"] * 4, ["Hilton", "", "", "Nike"], [None] * 4)
    assert set(tindex.vocab) == want


# --- the typo rule -------------------------------------------------------------------------

PAIRS = [
    ("hilton", "hiltn"), ("hilton", "hitlon"), ("hilton", "hilston"), ("hilton", "hilten"),
    ("hilton", "hlitno"), ("paris", "pari"), ("loft", "lfot"), ("tv", "tc"), ("café", "cafe"),
    ("berlin", "berlin"), ("seaside", "sea"), ("abcd", "abdc"), ("sea", "seaside"),
]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_the_typo_rule_is_the_same_everywhere(a: str, b: str) -> None:
    typo = text.is_typo(a, b)
    assert typo == (text.typo_distance(a, b) <= text.typo_budget(a))
    # query-match: the pairwise function and the vectorized term index
    assert query_match.fuzzy_match(a, frozenset({b})) == text.is_typed_or_typo(a, b)
    index = query_match.TermIndex([b], [None], [None], [None])
    got = index.features(a, np.array([0]))["qm_fuzzy_share"][0]
    assert got == float(text.is_typed_or_typo(a, b))
    # lexical recall: the vocabulary scan behind fuzzy terms
    items = pa.table({"item_id": ["x"], "title": [b]})
    bm25 = LexicalIndex().fit(items)
    term_ids = {bm25.index_.term_ids[t] for t in text.terms(b)}
    expanded = set(bm25.index_.expand(a, text.MAX_TYPO_EDITS).tolist())
    assert bool(expanded & term_ids) == (text.typo_distance(a, b) <= text.MAX_TYPO_EDITS
                                         or a in text.terms(b))


def test_cjk_typos_are_one_edit_but_matched_by_ngrams() -> None:
    # a wrong character is one edit (suggestion completes it), and recall / query-match,
    # which see CJK as characters and bigrams, still match most of the query exactly
    assert text.typo_distance("北京酒店", "北京久店") == 1 and text.is_typo("北京酒店", "北京久店")
    f = query_match.query_match_features(["北京酒店"], ["北京久店"], [None], [None], [None])
    assert f["qm_term_share"][0] == pytest.approx(4 / 7)  # 北 京 店 北京
    assert _suggest_typos(["北京久店"], "北京酒店") == {"北京久店"}


def test_the_length_rule_is_the_same_everywhere() -> None:
    assert text.MIN_TYPO_LEN == 4 and text.MAX_TYPO_EDITS == 1
    assert LexicalIndex().min_fuzzy_len == text.MIN_TYPO_LEN
    assert QueryCompleter().typo_min_len == text.MIN_TYPO_LEN
    assert text.typo_budget("abc") == 0 and text.typo_budget("abcd") == 1
    assert text.typo_budget("abcdefghij") == 1  # one edit, however long the word
    fuzzy = LexicalIndex()._parse("hilton abc")[1]
    assert fuzzy == [("hilton", text.MAX_TYPO_EDITS)]
    assert not query_match.fuzzy_match("abx", frozenset({"abc"}))


def _suggest_typos(keys: list[str], prefix: str) -> set[str]:
    """Completions the suggest index finds for ``prefix``, exact ones included."""
    qc = QueryCompleter(candidates=64, typo_below=10**6, pinyin=False)
    qc.fit(keys, [1.0] * len(keys))
    return set(qc.complete(prefix, k=64)[0])


@pytest.mark.parametrize("prefix", ["hilt", "hiltn", "hlit", "hiltom", "hilx", "abcd"])
def test_suggest_typo_search_equals_the_prefix_distance(prefix: str) -> None:
    keys = ["hilton", "hilton paris", "hotel", "hiltop", "hlton", "milton", "abdc", "bacd"]
    want = {k for k in keys if text.prefix_typo_distance(prefix, k) <= text.MAX_TYPO_EDITS}
    assert _suggest_typos(keys, prefix) == want


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text("abcé", min_size=1, max_size=7), min_size=1, max_size=12, unique=True),
       st.text("abcé", min_size=4, max_size=6))
def test_suggest_typo_search_equals_the_prefix_distance_property(keys, prefix) -> None:
    want = {k for k in keys if text.prefix_typo_distance(prefix, k) <= text.MAX_TYPO_EDITS}
    assert _suggest_typos(keys, prefix) == want


# --- properties ------------------------------------------------------------------------------

_ALPHABET = st.characters(blacklist_categories=("Cs",))


@settings(max_examples=500, deadline=None)
@given(st.text(_ALPHABET, max_size=30))
def test_normalisation_is_idempotent(raw: str) -> None:
    norm = text.normalize(raw)
    assert text.normalize(norm) == norm
    assert "  " not in norm and norm == norm.strip()


@settings(max_examples=500, deadline=None)
@given(st.text(_ALPHABET, max_size=30))
def test_tokens_of_normalised_text_equal_tokens_of_raw_text(raw: str) -> None:
    norm = text.normalize(raw)
    assert text.words(norm) == text.words(raw)
    assert text.terms(norm) == text.terms(raw)
    assert all(w and not any(ch.isspace() for ch in w) for w in text.words(raw))


words_st = st.text("abcdeé北京 -'", max_size=9)


@settings(max_examples=500, deadline=None)
@given(words_st, words_st)
def test_typo_distance_is_symmetric_and_zero_iff_equal_after_normalisation(a, b) -> None:
    d = text.typo_distance(a, b)
    assert d == text.typo_distance(b, a)
    assert (d == 0) == (text.normalize(a) == text.normalize(b))
    assert d == osa_distance(text.normalize(a), text.normalize(b))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text("abcd", max_size=7), min_size=1, max_size=15, unique=True),
       st.text("abcd", max_size=7), st.integers(0, 2))
def test_vocabulary_scans_equal_the_pairwise_distance(vocab, word, limit) -> None:
    v = text.Vocabulary(vocab)
    got = {vocab[i] for i in v.typos(word, limit)}
    assert got == {t for t in vocab if osa_distance(word, t) <= limit}
    close = {vocab[i] for i in v.typed_or_typos(word)}
    assert close == {t for t in vocab if text.is_typed_or_typo(word, t)}
