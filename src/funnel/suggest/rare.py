"""Completions for rare and unseen prefixes from popular query suffixes (Mitra & Craswell,
"Query auto-completion for rare prefixes", CIKM 2015).

A prefix no one typed in full ("tokyo sun suites ch") still ends in something common: its end
n-grams ("ch", "suites ch", "sun suites ch") are completed from a table of the log's frequent
query suffixes ("suites chalet") and the rest of the typed prefix is put back in front
("tokyo sun suites chalet"). Only suffixes ending at least ``min_count`` logged searches are
kept, so every completion ends the way real queries end; the language model then vets the whole.
The table is a :class:`QueryCompleter` over suffixes (same compact sorted arrays).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from funnel._checks import check_is_fitted, positive_int, validate_params
from funnel.suggest.completion import QueryCompleter
from funnel.suggest.saved import read_header

_FORMAT = "funnel.suggest.rare/1"


class SuffixCompleter:
    """Candidate completions of a prefix built from frequent query suffixes.

    Parameters
    ----------
    max_words : int
        Longest suffix kept (in words), and how many typed words may lead into it.
    min_count : int
        A suffix must end at least this many logged searches.
    per_lookup : int
        Suffixes read per end n-gram of the prefix.
    """

    def __init__(self, *, max_words: int = 3, min_count: int = 3, per_lookup: int = 8) -> None:
        self.max_words = max_words
        self.min_count = min_count
        self.per_lookup = per_lookup

    def get_params(self) -> dict[str, int]:
        return {"max_words": self.max_words, "min_count": self.min_count,
                "per_lookup": self.per_lookup}

    def fit(self, texts: Sequence[str], counts: Sequence[float] | np.ndarray) -> SuffixCompleter:
        """Count the end n-grams (1..``max_words`` words) of ``texts`` weighted by ``counts``."""
        validate_params(self.get_params(), {
            "max_words": (positive_int, "a positive int"),
            "min_count": (positive_int, "a positive int"),
            "per_lookup": (positive_int, "a positive int")})
        table: defaultdict[str, float] = defaultdict(float)
        for text, c in zip(texts, np.asarray(counts, dtype=np.float64).tolist(), strict=True):
            words = text.split()
            for j in range(1, min(self.max_words, len(words)) + 1):
                table[" ".join(words[-j:])] += c
        kept = [(s, c) for s, c in table.items() if c >= self.min_count]
        if not kept:  # a tiny log: an index of one never-matching key keeps serving uniform
            kept = [("\U0010ffff", 0.0)]
        self.index_ = QueryCompleter(candidates=self.per_lookup, typo_below=0, pinyin=False,
                                     category_lift=0.0, market_lift=0.0).fit(
            [s for s, _ in kept], [c for _, c in kept])
        self.n_suffixes_ = len(kept)
        return self

    def candidates(self, prefix: str) -> list[tuple[str, float, int]]:
        """(completion, suffix count, typed words used) for a normalized ``prefix``.

        Only prefixes with at least one finished word are served: a one-word prefix is the
        exact index's job. The completion is the typed head plus a logged suffix.
        """
        check_is_fitted(self, "index_")
        cut = prefix.rfind(" ")
        if cut < 0:
            return []
        head_words = prefix[:cut].split()
        partial = prefix[cut + 1:]
        out: list[tuple[str, float, int]] = []
        seen: set[str] = set()
        for j in range(0 if partial else 1, min(self.max_words - 1, len(head_words)) + 1):
            lead = " ".join(head_words[len(head_words) - j:]) if j else ""
            gram = f"{lead} {partial}" if j else partial
            rest = " ".join(head_words[: len(head_words) - j])
            texts, scores = self.index_.complete(gram, self.per_lookup, normalize=False)
            for suffix, s in zip(texts, scores.tolist(), strict=True):
                cand = f"{rest} {suffix}" if rest else suffix
                if cand not in seen:
                    seen.add(cand)
                    out.append((cand, s, j))
        return out

    def save(self, directory: Path) -> None:
        check_is_fitted(self, "index_")
        directory.mkdir(parents=True, exist_ok=True)
        self.index_.save(directory / "index")
        (directory / "rare.json").write_text(json.dumps(
            {"format": _FORMAT, "params": self.get_params(), "n_suffixes": self.n_suffixes_}))

    @classmethod
    def load(cls, directory: Path) -> SuffixCompleter:
        path = directory / "rare.json"
        meta = read_header(path, _FORMAT)
        obj = cls(**meta["params"])
        obj.index_ = QueryCompleter.load(directory / "index")
        obj.n_suffixes_ = int(meta["n_suffixes"])
        return obj
