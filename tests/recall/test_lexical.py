"""Lexical BM25: field boosts, CJK n-grams, typo tolerance, filters, round-trips, old format."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.exceptions import ArtifactError, NotFittedError
from funnel.recall._bm25_tantivy import TantivyBM25
from funnel.recall.base import RecallRequest
from funnel.recall.lexical import FIELDS, OLD_FORMAT, LexicalIndex
from funnel.recall.text import analyze, normalize_query

ITEMS = pa.table({
    "item_id": ["h1", "h2", "a1", "c1", "c2", "z1"],
    "title": [
        "Hilton Paris Opera hotel", "Grand hotel near the Louvre", "Cozy apartment in Paris",
        "北京希尔顿酒店", "上海外滩公寓", "Crane Rooms rustic studio in Tokyo 乡村 单间",
    ],
    "brand": ["Hilton", "Accor", "Independent", "希尔顿", "Independent", "Crane Rooms"],
    "category": ["hotel", "hotel", "apartment", "hotel", "apartment", "studio"],
    "market": ["paris", "paris", "paris", "beijing", "shanghai", "tokyo"],
})


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex().fit(ITEMS)


def test_english_query_ranks_the_matching_titles(index):
    assert index.search("paris apartment", k=3).item_ids.tolist()[0] == "a1"
    assert set(index.search("hotel", k=10).item_ids.tolist()) == {"h1", "h2", "c1"}


def test_brand_boost_beats_a_category_only_match(index):
    # "hilton" is in h1's title and brand; nothing else mentions it
    assert index.search("hilton hotel", k=3).item_ids.tolist()[0] == "h1"


def test_boosts_change_the_order():
    title_only = LexicalIndex(boosts={"title": 1.0, "brand": 0.0, "category": 0.0}).fit(ITEMS)
    category_heavy = LexicalIndex(boosts={"title": 0.0, "brand": 0.0, "category": 5.0}).fit(ITEMS)
    assert title_only.search("independent", k=5).item_ids.tolist() == []
    assert set(category_heavy.search("studio", k=5).item_ids.tolist()) == {"z1"}


def test_chinese_queries_match_without_spaces(index):
    assert index.search("北京酒店", k=1).item_ids.tolist() == ["c1"]
    assert index.search("外滩", k=1).item_ids.tolist() == ["c2"]
    assert index.search("乡村单间", k=1).item_ids.tolist() == ["z1"]


def test_typo_tolerance_for_short_queries(index):
    assert index.search("hiltn", k=1).item_ids.tolist() == ["h1"]
    assert index.search("apartmnet", k=1).item_ids.tolist() == ["a1"]  # transposition
    # a long query is not fuzzed: the typo alone finds nothing
    strict = LexicalIndex(fuzzy_max_words=0).fit(ITEMS)
    assert strict.search("hiltn", k=1).item_ids.tolist() == []


def test_market_filter_and_candidate_source(index):
    assert index.search("hotel", k=10, market="beijing").item_ids.tolist() == ["c1"]
    cands = index.candidates(RecallRequest(query="hotel", market="paris", k=1))
    assert len(cands.item_ids) == 1 and cands.item_ids[0] in {"h1", "h2"}
    assert len(index.candidates(RecallRequest(recent_items=["h1"]))) == 0


def test_save_load_round_trip_gives_identical_results(index, tmp_path):
    index.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    assert loaded.get_params() == index.get_params()
    a, b = index.index_.postings, loaded.index_.postings
    assert a.terms == b.terms and a.n_rows == b.n_rows
    for name in ("offsets", "docs", "impacts", "masks"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert getattr(a, name).dtype == getattr(b, name).dtype
    for q in ("paris hotel", "北京酒店", "hiltn"):
        for market in (None, "paris"):
            a, b = index.search(q, k=5, market=market), loaded.search(q, k=5, market=market)
            assert a.item_ids.tolist() == b.item_ids.tolist()
            assert a.scores.tolist() == b.scores.tolist()


def test_empty_and_unknown_queries_find_nothing(index):
    for q in ("", "   ", "!!! ???", "zzzzqqqq", "xy", "火星"):
        got = index.search(q, k=5)
        assert len(got) == 0 and got.scores.dtype == np.float32
    assert len(index.search("hotel", k=5, market="atlantis")) == 0
    assert len(LexicalIndex().fit(ITEMS.slice(0, 0)).search("hotel", k=3)) == 0


def test_scores_are_best_first_and_k_caps_the_result(index):
    got = index.search("hotel paris", k=2)
    assert len(got) == 2 and got.scores[0] >= got.scores[1] > 0
    assert len(index.search("hotel paris", k=100)) == 4  # h1, h2, a1, c1


def test_fuzzy_weight_zero_turns_typo_matching_off():
    assert LexicalIndex(fuzzy_weight=0.0).fit(ITEMS).search("hiltn", k=3).item_ids.tolist() == []


def test_an_index_saved_by_the_tantivy_version_still_loads(index, tmp_path):
    # format 1 as the previous version wrote it: tantivy files, ids.json, config with heap_bytes
    analysed = {f: [" ".join(analyze(v)) for v in ITEMS.column(f).to_pylist()] for f in FIELDS}
    old = TantivyBM25.build(analysed, ITEMS.column("market").to_pylist())
    shutil.copytree(old.path, tmp_path / "old" / "tantivy")
    params = {**index.get_params(), "heap_bytes": 64_000_000}
    (tmp_path / "old" / "config.json").write_text(json.dumps({"format": OLD_FORMAT,
                                                              "params": params}))
    (tmp_path / "old" / "ids.json").write_text(json.dumps(ITEMS.column("item_id").to_pylist()))
    with pytest.warns(UserWarning, match="rebuild it with `funnel build`"):
        loaded = LexicalIndex.load(tmp_path / "old")
    for q in ("paris hotel", "北京酒店", "hiltn"):
        a, b = index.search(q, k=5, market="paris"), loaded.search(q, k=5, market="paris")
        assert a.item_ids.tolist() == b.item_ids.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4)
    with pytest.raises(ArtifactError, match="rebuild it with `funnel build`"):
        loaded.save(tmp_path / "again")


def test_load_errors_name_the_file_and_the_fix(index, tmp_path):
    with pytest.raises(ArtifactError, match="config.json: missing"):
        LexicalIndex.load(tmp_path / "nothing")
    index.save(tmp_path / "lex")
    cfg = json.loads((tmp_path / "lex" / "config.json").read_text())
    (tmp_path / "lex" / "config.json").write_text(json.dumps({**cfg, "format": "x/9"}))
    with pytest.raises(ArtifactError, match="expected format 'funnel.lexical_index/2'; got 'x/9'"):
        LexicalIndex.load(tmp_path / "lex")
    (tmp_path / "lex" / "config.json").write_text(json.dumps({**cfg, "n_rows": 99}))
    with pytest.raises(ArtifactError, match="inconsistent LexicalIndex files"):
        LexicalIndex.load(tmp_path / "lex")


def test_errors():
    with pytest.raises(NotFittedError):
        LexicalIndex().search("x")
    with pytest.raises(ValueError, match="'boosts' parameter"):
        LexicalIndex(boosts={"colour": 1.0}).fit(ITEMS)
    with pytest.raises(ValueError, match="must have an 'item_id' column"):
        LexicalIndex().fit(pa.table({"title": ["x"]}))
    with pytest.raises(TypeError, match="text must be a str"):
        LexicalIndex().fit(ITEMS).search(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'k' parameter must be a positive int. Got 0"):
        LexicalIndex().fit(ITEMS).search("hotel", k=0)


def test_analyze_hand_examples():
    assert analyze("Hotels in PARIS") == ["hotel", "in", "pari"]
    assert analyze("北京饭店") == ["北", "京", "饭", "店", "北京", "京饭", "饭店"]
    assert analyze("Ｈｉｌｔｏｎ酒店") == ["hilton", "酒", "店", "酒店"]
    assert normalize_query("  Paris\tHOTEL ") == "paris hotel"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_analyze_properties(text):
    tokens = analyze(text)
    assert all(tok and not any(ch.isspace() for ch in tok) for tok in tokens)
    # analysis is stable: analysing the joined tokens of a latin-only text changes nothing
    if all(len(t) > 0 and t.isascii() for t in tokens):
        assert analyze(" ".join(tokens)) == [analyze(t)[0] for t in tokens]


def test_ties_are_broken_by_row_whatever_list_they_come_from():
    # rows 0, 4, 8 say "alpha", rows 1, 5, 9 "bravo", the rest "charlie": "alpha bravo" scores
    # all six the same (same df, same length), so the top 3 are the three lowest rows
    titles = ["alpha", "bravo", "charlie", "charlie"] * 3
    items = pa.table({"item_id": [f"r{i}" for i in range(12)], "title": titles,
                      "brand": [""] * 12, "category": [""] * 12, "market": ["m"] * 12})
    index = LexicalIndex(fuzzy_max_words=0).fit(items)
    for block in (65536, 5, 1):
        index.index_.block = block
        got = index.search("alpha bravo", k=3)
        assert got.item_ids.tolist() == ["r0", "r1", "r4"]
        assert len(set(got.scores.tolist())) == 1
        assert index.search("bravo alpha", k=6).item_ids.tolist() == [
            "r0", "r1", "r4", "r5", "r8", "r9"]


def test_a_fuzzy_word_adds_a_constant_per_field_its_exact_term_included():
    # "hilton" is in h1's title (boost 3) and brand (boost 2): as a short query it is also a
    # fuzzy word, and the exact term is within distance 1 of itself, as in tantivy
    exact_only = LexicalIndex(fuzzy_weight=0.0).fit(ITEMS).search("hilton", k=1)
    with_fuzzy = LexicalIndex(fuzzy_weight=0.5).fit(ITEMS).search("hilton", k=1)
    assert exact_only.item_ids.tolist() == with_fuzzy.item_ids.tolist() == ["h1"]
    assert with_fuzzy.scores[0] - exact_only.scores[0] == pytest.approx(3 * 0.5 + 2 * 0.5)
    # a typo scores the fuzzy constants alone: title and brand, nothing from BM25
    typo = LexicalIndex(fuzzy_weight=0.5).fit(ITEMS).search("hiltom", k=5)
    assert typo.item_ids.tolist() == ["h1"] and typo.scores[0] == pytest.approx(2.5)


def test_a_k_larger_than_the_catalog_returns_every_match(index):
    assert len(index.search("hotel", k=10**12)) == 3
