"""Text analysis shared by the lexical index and query -> items: English words + CJK n-grams.

Chinese and Japanese have no spaces, so a run of CJK characters becomes its single characters
and its overlapping bigrams (the classic CJK analyzer of Lucene): a query "北京酒店" then matches
a title "北京希尔顿酒店" on 北/京/酒/店 and 北京/酒店 without a dictionary. Latin text is
NFKC-normalised, lower-cased, split on non-alphanumerics, and lightly de-pluralised.
"""

from __future__ import annotations

import re
import unicodedata

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # compatibility ideographs
)
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")


def normalize_query(text: str) -> str:
    """Canonical form of a query string: NFKC, lower case, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _stem(token: str) -> str:
    # plural "s" only: cheap, predictable, and the same on both sides of the match
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def is_cjk(token: str) -> bool:
    return bool(_CJK_RUN.match(token))


def analyze(text: str | None) -> list[str]:
    """Tokens of ``text``: latin words, and CJK unigrams + bigrams."""
    if not text:
        return []
    out: list[str] = []
    for run in _TOKEN.findall(unicodedata.normalize("NFKC", text).lower()):
        if _CJK_RUN.match(run):
            out.extend(run)
            out.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            out.append(_stem(run))
    return out


def words(text: str | None) -> list[str]:
    """The query's latin words and CJK runs before n-gramming (for typo tolerance)."""
    if not text:
        return []
    return [
        run if _CJK_RUN.match(run) else _stem(run)
        for run in _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())
    ]
