"""Per-query statistics looked up by text: count, score, recency, category, market.

The ranker needs them for every candidate, including suffix-built ones that may happen to be
logged queries, and the completion index does not expose them by text. A dict of a million
strings costs ~100 MB; sorted 64-bit hashes (stable blake2b, not Python's salted ``hash``) and
parallel arrays cost 28 bytes per query.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from funnel._checks import check_is_fitted
from funnel.suggest.saved import read_header

_FORMAT = "funnel.suggest.query_stats/1"
_COLUMNS = ("hashes", "count", "score", "recency", "category", "market")


def text_hash(text: str) -> int:
    """Stable signed 64-bit hash of a query (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(),
                          "little", signed=True)


class QueryStats:
    """Statistics of logged queries keyed by text hash; vocabularies map label ids to names."""

    def fit(
        self,
        queries: Sequence[str],
        count: np.ndarray,
        score: np.ndarray,
        recency: np.ndarray,
        categories: Sequence[str | None] | None = None,
        markets: Sequence[str | None] | None = None,
    ) -> QueryStats:
        """``recency`` is the time-decayed count divided by the count (1 = all searches new)."""
        n = len(queries)
        hashes = np.fromiter((text_hash(q) for q in queries), np.int64, n)
        order = np.argsort(hashes, kind="stable")
        self.hashes_ = hashes[order]
        self.count_ = np.asarray(count, dtype=np.float32)[order]
        self.score_ = np.asarray(score, dtype=np.float32)[order]
        self.recency_ = np.asarray(recency, dtype=np.float32)[order]
        self.category_vocab_, cat = _codes(categories, n)
        self.market_vocab_, mkt = _codes(markets, n)
        self.category_ = cat[order]
        self.market_ = mkt[order]
        self._post_load()
        return self

    def _post_load(self) -> None:
        self._cat_index = {c: i for i, c in enumerate(self.category_vocab_)}
        self._mkt_index = {m: i for i, m in enumerate(self.market_vocab_)}

    def category_id(self, name: str) -> int:
        return self._cat_index.get(name, -2)

    def market_id(self, name: str | None) -> int:
        return self._mkt_index.get(name, -2) if name is not None else -2

    def lookup(self, texts: Sequence[str]) -> np.ndarray:
        """Row of each text in the arrays, -1 when it is not a logged query."""
        check_is_fitted(self, "hashes_")
        if not len(self.hashes_):
            return np.full(len(texts), -1, dtype=np.int64)
        h = np.fromiter((text_hash(t) for t in texts), np.int64, len(texts))
        pos = np.minimum(np.searchsorted(self.hashes_, h), len(self.hashes_) - 1)
        return np.where(self.hashes_[pos] == h, pos, -1)

    def save(self, directory: Path) -> None:
        check_is_fitted(self, "hashes_")
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "query_stats.npz", **{c: getattr(self, f"{c}_") for c in _COLUMNS})
        (directory / "query_stats.json").write_text(json.dumps(
            {"format": _FORMAT, "categories": self.category_vocab_,
             "markets": self.market_vocab_}, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> QueryStats:
        path = directory / "query_stats.json"
        meta = read_header(path, _FORMAT)
        obj = cls()
        with np.load(directory / "query_stats.npz", allow_pickle=False) as data:
            for c in _COLUMNS:
                setattr(obj, f"{c}_", data[c])
        obj.category_vocab_ = list(meta["categories"])
        obj.market_vocab_ = list(meta["markets"])
        obj._post_load()
        return obj


def _codes(values: Sequence[str | None] | None, n: int) -> tuple[list[str], np.ndarray]:
    """Sorted vocabulary and int32 codes (-1 for None) of a label column."""
    if values is None:
        return [], np.full(n, -1, dtype=np.int32)
    if len(values) != n:
        raise ValueError(f"labels must have one value per query ({n}); got {len(values)}")
    vocab = sorted({v for v in values if v is not None})
    index = {v: i for i, v in enumerate(vocab)}
    return vocab, np.asarray([index[v] if v is not None else -1 for v in values], np.int32)
