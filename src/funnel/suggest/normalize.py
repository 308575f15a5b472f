"""Query text normalization, block lists and pinyin aliases for suggestion.

Normalization and words are the shared analyzer's (:mod:`funnel.text`), so "Nike  Air",
"ＮＩＫＥ air" and "nike-air" count as one query here, in lexical recall and in the ranker's
query-match features. What is suggestion's own: a typed prefix keeps its trailing space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from funnel import text

_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff]")


def normalize_query(query: str, *, keep_trailing_space: bool = False) -> str:
    """Canonical query text (:func:`funnel.text.normalize`): NFKC, case-folded, punctuation to
    spaces.

    ``keep_trailing_space`` keeps one trailing space for typed prefixes, where "nike " (a
    finished word) must not complete to "nikes".
    """
    if not isinstance(query, str):
        raise TypeError(f"query text must be a str; got {type(query).__name__} {query!r}")
    out = text.normalize(query)
    if keep_trailing_space and out and text.normalize(f"a{query[-1:]}b") == "a b":
        out += " "  # the last character typed is a separator: the last word is finished
    return out


def tokens(query: str) -> list[str]:
    """Words of a query (:func:`funnel.text.words`)."""
    return text.words(query)


def has_cjk(text: str) -> bool:
    """True when ``text`` contains a CJK unified ideograph (Chinese characters)."""
    return _HAN.search(text) is not None


def pinyin_aliases(query: str) -> list[str]:
    """Pinyin spellings a user may type for a Chinese query: full, spaced and initials.

    "北京酒店" -> ["beijingjiudian", "bei jing jiu dian", "bjjd"]. Non-Chinese parts are kept
    as they are. Returns [] for queries without Chinese characters.
    """
    if not has_cjk(query):
        return []
    from pypinyin import Style, lazy_pinyin  # local: only Chinese queries need it

    parts = [s.strip() for s in lazy_pinyin(query, style=Style.NORMAL) if s.strip()]
    # a syllable's initial is its first letter; non-Chinese chunks ("nike ") stay whole
    initials = [p[0] if _HAN.search(ch) else p for p, ch in _align(query, parts)]
    full = normalize_query("".join(parts).replace(" ", ""))
    spaced = normalize_query(" ".join(parts))
    short = normalize_query("".join(initials).replace(" ", ""))
    out: list[str] = []
    for alias in (full, spaced, short):
        if alias and alias != query and alias not in out:
            out.append(alias)
    return out


def _align(query: str, parts: list[str]) -> list[tuple[str, str]]:
    """Pair each pinyin part with its source text: one Han character, or a non-Han chunk."""
    chunks: list[str] = []
    buf = ""
    for ch in query:
        if _HAN.match(ch):
            if buf.strip():
                chunks.append(buf.strip())
            buf = ""
            chunks.append(ch)
        else:
            buf += ch
    if buf.strip():
        chunks.append(buf.strip())
    if len(chunks) != len(parts):  # pypinyin split a chunk differently: treat all as Han
        return [(p, "\u4e00") for p in parts]
    return list(zip(parts, chunks, strict=True))


class BlockList:
    """Terms and phrases that must never be suggested, matched on whole tokens.

    Tokens here are the whitespace tokens of the normalised text, what a suggestion shows, not
    :func:`funnel.text.words`: an entry "18+" blocks "18+" but not "iphone 18".
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.terms: frozenset[str] = frozenset()
        self.phrases: tuple[str, ...] = ()
        terms: set[str] = set()
        phrases: list[str] = []
        for raw in entries:
            norm = normalize_query(raw)
            if not norm:
                continue
            if " " in norm:
                phrases.append(f" {norm} ")
            else:
                terms.add(norm)
        self.terms = frozenset(terms)
        self.phrases = tuple(phrases)

    def blocks(self, query: str) -> bool:
        """True when the normalized ``query`` contains a blocked term or phrase."""
        if any(tok in self.terms for tok in query.split()):
            return True
        padded = f" {query} "
        return any(p in padded for p in self.phrases)

    def __len__(self) -> int:
        return len(self.terms) + len(self.phrases)
