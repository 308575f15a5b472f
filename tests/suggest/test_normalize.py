from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from funnel.suggest.normalize import BlockList, has_cjk, normalize_query, pinyin_aliases


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＮＩＫＥ  Air-Max!!", "nike air max"),
        ("  Women's   shoes ", "womens shoes"),
        ("//manual transmission shifters//", "manual transmission shifters"),
        ("北京　酒店", "北京 酒店"),  # full-width space
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width katakana to full-width
        ("Straße", "strasse"),  # casefold, not lower
        ("", ""),
    ],
)
def test_normalize_known_cases(raw: str, expected: str) -> None:
    assert normalize_query(raw) == expected


def test_trailing_space_kept_only_for_prefixes() -> None:
    assert normalize_query("nike ", keep_trailing_space=True) == "nike "
    assert normalize_query("nike ") == "nike"
    assert normalize_query("nike", keep_trailing_space=True) == "nike"


@given(st.text(max_size=40))
def test_normalize_is_idempotent_and_clean(text: str) -> None:
    out = normalize_query(text)
    assert normalize_query(out) == out
    assert "  " not in out and out == out.strip()
    assert out == out.casefold() or normalize_query(out.casefold()) == out


@given(st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20))
def test_full_width_equals_half_width(text: str) -> None:
    full = "".join(chr(ord(c) + 0xFEE0) for c in text)  # ASCII -> full-width forms
    assert normalize_query(full) == normalize_query(text)


def test_normalize_rejects_non_str() -> None:
    with pytest.raises(TypeError, match="query text must be a str; got int 5"):
        normalize_query(5)  # type: ignore[arg-type]


def test_block_list_terms_and_phrases() -> None:
    bl = BlockList(["Badword", "free money", "  "])
    assert len(bl) == 2
    assert bl.blocks("some badword here")
    assert bl.blocks("get free money now")
    assert not bl.blocks("badwords")  # whole tokens only
    assert not bl.blocks("free moneybag")


def test_block_list_matches_the_shown_tokens_not_the_analyzer_words() -> None:
    bl = BlockList(["18+"])
    assert bl.blocks(normalize_query("Toys 18+")) and not bl.blocks("iphone 18")


def test_pinyin_aliases() -> None:
    assert has_cjk("nike 运动鞋") and not has_cjk("nike")
    assert pinyin_aliases("北京酒店") == ["beijingjiudian", "bei jing jiu dian", "bjjd"]
    assert pinyin_aliases("nike") == []
