"""The one text analyzer: normalisation, words, index terms (the CJK policy) and the typo rule.

Lexical recall, the ranker's query-match features and query suggestion all read text through
this module, so a query matches an item (or completes to a suggestion) by the same rules
everywhere; they used to have three tokenizers and three ideas of a typo.

- :func:`normalize`: NFKC (full-width to half-width), case-folded ("Straße" -> "strasse"),
  apostrophes dropped ("women's" -> "womens"), punctuation, controls and symbols to spaces
  except ``+`` and currency signs ("c++", "$50"), single spaces. Suggestion's normalisation,
  kept because suggestion shows normalised queries, so this form must stay readable. Accents
  are kept: none of the three folded them, and "cafe" is one typo from "café" anyway.
- :func:`words`: runs of CJK characters, and runs of other letters and digits, of the
  normalised text (the split lexical recall always used: "iphone手机" is two words, "c++" is
  "c").
- :func:`terms`: what is indexed and matched. Latin words lose a plural "s"; a CJK run becomes
  its characters and its overlapping bigrams (Lucene's CJK analyzer: "北京酒店" matches
  "北京希尔顿酒店" on 北/京/酒/店 and 北京/酒店 without a dictionary). Lexical recall's policy,
  kept because BM25 quality depends on it; query-match used to keep CJK runs whole, which
  matched a Chinese query only when a title had exactly its run.
- The typo rule: :func:`typo_distance` is optimal-string-alignment edit distance (adjacent
  swap costs 1), and a word of :data:`MIN_TYPO_LEN` characters or more may be
  :data:`MAX_TYPO_EDITS` edit away (:func:`is_typo`). One edit because suggestion's index
  search (:mod:`funnel.suggest._kernels`) enumerates one-edit variants, and nearly all typing
  errors (and every typo the synthetic log generates) are one edit; lexical recall used to
  allow two edits from 8 letters, query-match a character-trigram overlap that missed
  "hiltn" for "hilton". Four letters because below that one edit turns a word into another
  ("tv" -> "tc").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

import numpy as np

MIN_TYPO_LEN = 4
MAX_TYPO_EDITS = 1
MIN_PREFIX_LEN = 3  # a typed prefix this long already names a word ("par" -> "paris")

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # compatibility ideographs
)
_WORD = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_CJK_RUN = re.compile(rf"[{_CJK}]+")
_KEPT_SYMBOLS = "+$€£¥"  # symbols (category S) that stay; "&", "%", "#" are punctuation
_APOSTROPHES = "'’`´"


class _SeparatorTable(dict[int, Any]):
    """Character -> replacement: apostrophes dropped, separators to a space, the rest kept.

    Filled on first sight of each character, so ``str.translate`` stays one C loop."""

    def __missing__(self, code: int) -> str | None:
        ch = chr(code)
        cat = unicodedata.category(ch)
        if ch in _APOSTROPHES:
            out: str | None = None
        elif cat[0] in "PZC" or (cat[0] == "S" and ch not in _KEPT_SYMBOLS):
            out = " "
        else:
            out = ch
        self[code] = out
        return out


_TABLE = _SeparatorTable()
_NON_WORD = re.compile(r"[^\w\s]|_")


def _fold(text: str) -> str:
    if text.isascii():  # NFKC is the identity and casefold is lower on ASCII
        return " ".join(text.lower().translate(_TABLE).split())
    # only non-word characters can be separators: look those up, not every ideograph
    folded = unicodedata.normalize("NFKC", text.casefold())
    return " ".join(_NON_WORD.sub(_separator, folded).split())


def _separator(match: re.Match[str]) -> str:
    return _TABLE[ord(match.group())] or ""


def _settled(text: str) -> bool:
    """Whether :func:`_fold` leaves ``text`` as it is: it has no separators left (it came out
    of ``_fold``), so only NFKC and case folding could still change it."""
    if text.isascii():
        return text == text.lower()  # NFKC can make capitals after folding: "ᴬ" -> "A"
    return unicodedata.is_normalized("NFKC", text) and text.casefold() == text


def _normalize(text: str) -> str:
    out = _fold(text)
    for _ in range(3):  # rare: "ᾳ", or an apostrophe dropped before a combining mark
        if _settled(out):
            break
        out = _fold(out)
    return out


@lru_cache(maxsize=1 << 16)
def normalize(text: str) -> str:
    """Canonical form of a query or title (see the module docstring); idempotent."""
    return _normalize(text)


def words(text: str | None) -> list[str]:
    """The words of ``normalize(text)``: CJK runs whole, other runs of letters and digits."""
    if not text:
        return []
    return _WORD.findall(normalize(text))


def is_cjk(word: str) -> bool:
    """True when ``word`` is a run of CJK characters (as :func:`words` splits them)."""
    return _CJK_RUN.fullmatch(word) is not None


def _cjk_word(word: str) -> bool:
    # a word of :func:`words` is all CJK or has none: its first character decides
    c = word[0]
    return c >= "\u3040" and (
        c <= "\u30ff" or "\u3400" <= c <= "\u4dbf" or "\u4e00" <= c <= "\u9fff"
        or "\uac00" <= c <= "\ud7af" or "\uf900" <= c <= "\ufaff"
    )


def stem(word: str) -> str:
    """Drop a plural "s" (not "ss"): cheap, predictable, the same on both sides of a match."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def terms(text: str | None) -> list[str]:
    """Index and match terms of ``text``: stemmed latin words, CJK unigrams then bigrams."""
    out: list[str] = []
    for word in words(text):
        if _cjk_word(word):
            out.extend(word)
            out.extend(word[i : i + 2] for i in range(len(word) - 1))
        elif len(word) > 3 and word[-1] == "s" and word[-2] != "s":
            out.append(word[:-1])  # stem(), inlined: this loop indexes every title
        else:
            out.append(word)
    return out


def typo_budget(word: str) -> int:
    """Edits a typo of ``word`` may be away from it: 0 below :data:`MIN_TYPO_LEN` characters."""
    return MAX_TYPO_EDITS if len(word) >= MIN_TYPO_LEN else 0


def codes(text: str) -> np.ndarray:
    """Code points of ``text`` as the int32 array the kernels compare."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int32)


def typo_distance(a: str, b: str) -> int:
    """Edit distance of the normalised texts (insert, delete, substitute, adjacent swap: 1)."""
    from funnel._text_kernels import osa_distance

    return int(osa_distance(codes(normalize(a)), codes(normalize(b))))


def prefix_typo_distance(prefix: str, key: str) -> int:
    """Edit distance of a typed ``prefix`` to the nearest prefix of ``key`` (both as given:
    suggestion compares normalised keys)."""
    from funnel._text_kernels import prefix_distance

    return int(prefix_distance(codes(prefix), codes(key)))


@lru_cache(maxsize=1 << 18)
def is_typo(word: str, other: str) -> bool:
    """Whether ``other`` is within ``typo_budget(word)`` edits of ``word`` (equal included).

    Compares the strings as given (callers pass terms, already normalised)."""
    if word == other:
        return True
    budget = typo_budget(word)
    if budget == 0 or abs(len(word) - len(other)) > budget:
        return False
    from funnel._text_kernels import osa_distance

    return int(osa_distance(codes(word), codes(other))) <= budget


def is_typed_or_typo(word: str, other: str) -> bool:
    """``other`` starts with ``word`` (a word still being typed, :data:`MIN_PREFIX_LEN`
    characters or more) or is a typo of it: how a query term matches an item term fuzzily."""
    return (len(word) >= MIN_PREFIX_LEN and other.startswith(word)) or is_typo(word, other)


class Vocabulary:
    """Terms as a padded code-point matrix, for typo scans over all of them in numba."""

    def __init__(self, vocab: list[str]) -> None:
        width = max((len(t) for t in vocab), default=0)
        self.codes = np.zeros((len(vocab), width), dtype=np.int32)
        for i, t in enumerate(vocab):
            self.codes[i, : len(t)] = codes(t)
        self.lengths = np.array([len(t) for t in vocab], dtype=np.int64)

    def typos(self, word: str, edits: int | None = None) -> np.ndarray:
        """Ids of the terms within ``edits`` (default ``typo_budget(word)``) of ``word``."""
        from funnel._text_kernels import within_edits

        limit = typo_budget(word) if edits is None else edits
        return within_edits(self.codes, self.lengths, codes(word), limit)

    def typed_or_typos(self, word: str) -> np.ndarray:
        """Ids of the terms :func:`is_typed_or_typo` accepts for ``word``."""
        from funnel._text_kernels import close_terms

        return close_terms(self.codes, self.lengths, codes(word), typo_budget(word),
                           MIN_PREFIX_LEN)
