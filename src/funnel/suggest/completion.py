"""Prefix completion over a compact sorted-array index with precomputed top-K per block range.

Not a dict of prefixes: the index is the sorted keys as one code-unit array (2 bytes per
character for text in the Basic Multilingual Plane), a score per key, and a sparse table of
top-K key ids over blocks of keys, about ``K * log2(n / block) * 4 / block`` bytes per key,
and the top of the key trie (nodes over more than ``block`` keys, with their child lists) so
lookups and the one-edit search walk small nodes instead of binary-searching a million keys.
Chinese queries get pinyin alias keys (full, spaced, initials) that point at the query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funnel._checks import (
    check_is_fitted,
    non_negative_int,
    positive_float,
    positive_int,
    validate_params,
)
from funnel.exceptions import ArtifactError
from funnel.suggest import _kernels
from funnel.suggest.normalize import normalize_query, pinyin_aliases

_FORMAT = "funnel.suggest.completion/2"  # 2: the trie arrays
_ARRAYS = ("codes", "offsets", "scores", "targets", "cats", "mkts", "table", "level_start",
           "trie_chars", "trie_nodes")


def _encode(text: str, dtype: np.dtype) -> np.ndarray:
    if dtype.itemsize == 2 and (not text or max(text) < "\U00010000"):
        return np.frombuffer(text.encode("utf-16-le"), dtype=np.uint16)
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _block_table(scores: np.ndarray, block: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse table: row ``level_start[l] + b`` = best ``k`` keys of blocks ``[b, b + 2**l)``."""
    n = scores.shape[0]
    nblocks = max(1, -(-n // block))
    padded = np.full(nblocks * block, -np.inf, dtype=np.float32)
    padded[:n] = scores
    ext = np.append(scores.astype(np.float32), np.float32(-np.inf))  # ext[-1] for id -1
    local = np.argsort(-padded.reshape(nblocks, block), axis=1, kind="stable")[:, : min(k, block)]
    ids = (local + (np.arange(nblocks, dtype=np.int64) * block)[:, None]).astype(np.int32)
    ids[ids >= n] = -1
    if ids.shape[1] < k:
        ids = np.hstack([ids, np.full((nblocks, k - ids.shape[1]), -1, np.int32)])
    levels = [ids]
    span = 1
    while 2 * span <= nblocks:
        prev = levels[-1]
        cand = np.hstack([prev[: len(prev) - span], prev[span:]])  # (rows, 2k), disjoint halves
        order = np.argsort(-ext[cand], axis=1, kind="stable")[:, :k]
        levels.append(np.take_along_axis(cand, order, axis=1))
        span *= 2
    level_start = np.cumsum([0] + [len(lv) for lv in levels[:-1]]).astype(np.int64)
    return np.vstack(levels), level_start


class QueryCompleter:
    """Top-k query completion for a typed prefix, typo tolerant and personalised.

    Parameters
    ----------
    candidates : int
        K, the keys kept per block-range node; also the pool re-scored per request.
    block_size : int
        Keys per block of the sparse table (memory falls, scan work grows, with size).
    typo_min_len : int
        Only prefixes of at least this many characters get one-edit completions.
    typo_below : int
        Search one-edit variants when the exact prefix has fewer than this many completions
        (1: only when it has none); they fill the slots after every exact completion.
        0 turns typo tolerance off.
    typo_penalty : float
        Factor on the score of a completion reached through an edit.
    pinyin : bool
        Index pinyin spellings (full, spaced, initials) of Chinese queries.
    category_lift, market_lift : float
        Per-request multiplier ``1 + lift`` for completions in the user's recent categories
        or market.

    Example
    -------
    >>> qc = QueryCompleter().fit(["nike shoes", "nike air", "adidas"], [5.0, 9.0, 3.0])
    >>> qc.complete("nik", k=2)[0]
    ['nike air', 'nike shoes']
    """

    def __init__(
        self,
        *,
        candidates: int = 16,
        block_size: int = 32,
        typo_min_len: int = 4,
        typo_below: int = 1,
        typo_penalty: float = 0.3,
        pinyin: bool = True,
        category_lift: float = 1.0,
        market_lift: float = 0.5,
    ) -> None:
        self.candidates = candidates
        self.block_size = block_size
        self.typo_min_len = typo_min_len
        self.typo_below = typo_below
        self.typo_penalty = typo_penalty
        self.pinyin = pinyin
        self.category_lift = category_lift
        self.market_lift = market_lift

    def get_params(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "block_size": self.block_size,
            "typo_min_len": self.typo_min_len,
            "typo_below": self.typo_below,
            "typo_penalty": self.typo_penalty,
            "pinyin": self.pinyin,
            "category_lift": self.category_lift,
            "market_lift": self.market_lift,
        }

    _PARAMS = {
        "candidates": (positive_int, "a positive int"),
        "block_size": (positive_int, "a positive int"),
        "typo_min_len": (positive_int, "a positive int"),
        "typo_below": (non_negative_int, "an int >= 0"),
        "typo_penalty": (positive_float, "a float > 0"),
        "pinyin": (lambda v: isinstance(v, bool), "a bool"),
        "category_lift": (lambda v: isinstance(v, int | float) and v >= 0, "a float >= 0"),
        "market_lift": (lambda v: isinstance(v, int | float) and v >= 0, "a float >= 0"),
    }

    def validate(self) -> None:
        """Check the hyperparameters (``fit`` does this first)."""
        validate_params(self.get_params(), self._PARAMS)

    def fit(
        self,
        queries: Sequence[str],
        scores: Sequence[float] | np.ndarray,
        *,
        categories: Sequence[str | None] | None = None,
        markets: Sequence[str | None] | None = None,
    ) -> QueryCompleter:
        """Index normalized, distinct ``queries`` with their ``scores`` (higher is better).

        ``categories`` / ``markets`` (one per query, None when unknown) drive personalization.
        """
        self.validate()
        n = len(queries)
        score_arr = np.asarray(scores, dtype=np.float64)
        if score_arr.shape != (n,):
            raise ValueError(
                f"scores must have one value per query ({n}); got shape {score_arr.shape}"
            )
        if n == 0:
            raise ValueError("queries must not be empty; got 0 queries to index")
        if not np.all(np.isfinite(score_arr)) or np.any(score_arr < 0):
            raise ValueError("scores must be finite and >= 0; got a negative or non-finite value")
        for name, col in (("categories", categories), ("markets", markets)):
            if col is not None and len(col) != n:
                raise ValueError(f"{name} must have one value per query ({n}); got {len(col)}")
        seen: set[str] = set()
        for q in queries:
            if not isinstance(q, str) or not q:
                raise ValueError(f"queries must be non-empty str; got {q!r}")
            if q in seen:
                raise ValueError(f"queries must be distinct; got {q!r} twice")
            seen.add(q)
        cat_vocab, cat_ids = _vocab(categories, n)
        mkt_vocab, mkt_ids = _vocab(markets, n)

        keys: list[str] = list(queries)
        owner: list[int] = list(range(n))
        if self.pinyin:
            for i, q in enumerate(queries):
                for alias in pinyin_aliases(q):
                    if alias not in seen:
                        keys.append(alias)
                        owner.append(i)
        order = sorted(range(len(keys)), key=keys.__getitem__)
        sorted_keys = [keys[i] for i in order]
        owner_sorted = np.asarray(owner, dtype=np.int64)[order]
        pos = np.empty(n, dtype=np.int64)
        order_arr = np.asarray(order, dtype=np.int64)
        canonical = order_arr < n
        pos[order_arr[canonical]] = np.nonzero(canonical)[0]
        targets = pos[owner_sorted]

        joined = "".join(sorted_keys)
        raw16 = joined.encode("utf-16-le")
        codes: np.ndarray
        if len(raw16) == 2 * len(joined):  # no surrogate pairs: every character fits 2 bytes
            codes = np.frombuffer(raw16, dtype=np.uint16).copy()
        else:
            codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).copy()
        del raw16
        lengths = np.fromiter(map(len, sorted_keys), dtype=np.int64, count=len(sorted_keys))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        key_scores = score_arr[owner_sorted].astype(np.float32)
        table, level_start = _block_table(key_scores, self.block_size, self.candidates)
        trie_chars, trie_nodes = _kernels.build_trie(codes, offsets, self.block_size)

        self.codes_ = codes
        self.offsets_ = offsets
        self.scores_ = key_scores
        self.targets_ = targets
        self.cats_ = cat_ids[owner_sorted].astype(np.int32)
        self.mkts_ = mkt_ids[owner_sorted].astype(np.int32)
        self.table_ = table
        self.level_start_ = level_start
        self.trie_chars_ = trie_chars
        self.trie_nodes_ = trie_nodes
        self.category_vocab_ = cat_vocab
        self.market_vocab_ = mkt_vocab
        self.n_queries_ = n
        self._post_load()
        return self

    def _post_load(self) -> None:
        self._cat_index = {c: i for i, c in enumerate(self.category_vocab_)}
        self._mkt_index = {c: i for i, c in enumerate(self.market_vocab_)}
        self._dtype = self.codes_.dtype
        self._codec = "utf-16-le" if self._dtype.itemsize == 2 else "utf-32-le"
        self._no_cats = np.empty(0, dtype=np.int32)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays (the structure's memory)."""
        check_is_fitted(self, "codes_")
        return int(sum(getattr(self, f"{a}_").nbytes for a in _ARRAYS))

    def key(self, index: int) -> str:
        """The key text stored at sorted position ``index``."""
        a, b = int(self.offsets_[index]), int(self.offsets_[index + 1])
        raw = self.codes_[a:b].tobytes()
        return raw.decode(self._codec)

    def _keys(self, ids: np.ndarray) -> list[str]:
        """Decode many keys at once (one decode call instead of one per key)."""
        flat, ends = _kernels.gather_keys(self.codes_, self.offsets_, ids)
        text = flat.tobytes().decode(self._codec)
        out, start = [], 0
        for end in ends.tolist():
            out.append(text[start:end])
            start = end
        return out

    def __contains__(self, query: object) -> bool:
        """True when ``query`` (normalized text) is an indexed query, not only an alias."""
        check_is_fitted(self, "codes_")
        if not isinstance(query, str) or not query:
            return False
        j = int(_kernels.find_exact(self.codes_, self.offsets_, _encode(query, self.codes_.dtype)))
        while 0 <= j < len(self.targets_) and self.key(j) == query:
            if int(self.targets_[j]) == j:
                return True
            j += 1
        return False

    def complete(
        self,
        prefix: str,
        k: int = 10,
        *,
        categories: Iterable[str] = (),
        market: str | None = None,
        normalize: bool = True,
    ) -> tuple[list[str], np.ndarray]:
        """The top-``k`` completions of ``prefix`` and their scores, best first.

        Parameters
        ----------
        prefix : str
            What the user typed (normalized here unless ``normalize=False``; a trailing
            space is kept so a finished word is not completed).
        k : int
            Number of completions, at most ``candidates`` (the re-scored pool).
        categories, market : user's recent categories and market; matching completions get
            ``1 + category_lift`` / ``1 + market_lift`` times their score.

        Returns
        -------
        (queries, scores) : list of str and float64 array, same length <= k.

        Raises
        ------
        NotFittedError, TypeError, ValueError
        """
        check_is_fitted(self, "codes_")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str; got {type(prefix).__name__} {prefix!r}")
        if not positive_int(k) or k > max(self.candidates, 1):
            raise ValueError(f"k must be an int in [1, {self.candidates}]; got {k!r}")
        text = normalize_query(prefix, keep_trailing_space=True) if normalize else prefix
        found = [self._cat_index[c] for c in categories if c in self._cat_index]
        user_cats = np.array(found, dtype=np.int32) if found else self._no_cats
        user_mkt = self._mkt_index.get(market, -1) if market is not None else -1
        ids, scores, _ = _kernels.complete(
            self.codes_, self.offsets_, self.scores_, self.targets_, self.cats_, self.mkts_,
            self.table_, self.level_start_, self.block_size, self.trie_chars_,
            self.trie_nodes_, _encode(text, self._dtype),
            user_cats, user_mkt, float(self.category_lift), float(self.market_lift), k,
            max(self.candidates, k), self.typo_min_len, self.typo_below,
            float(self.typo_penalty),
        )
        return self._keys(ids), scores

    def save(self, directory: Path) -> None:
        """Write ``config.json`` and ``index.npz`` (no pickle) into ``directory``."""
        check_is_fitted(self, "codes_")
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT,
            "params": self.get_params(),
            "category_vocab": self.category_vocab_,
            "market_vocab": self.market_vocab_,
            "n_queries": self.n_queries_,
        }
        np.savez(directory / "index.npz", **{a: getattr(self, f"{a}_") for a in _ARRAYS})
        (directory / "config.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, directory: Path) -> QueryCompleter:
        """Rebuild a fitted completer saved by :meth:`save`."""
        cfg_path = directory / "config.json"
        if not cfg_path.exists() or not (directory / "index.npz").exists():
            raise ArtifactError(f"{directory}: no completion index (config.json + index.npz)")
        meta = json.loads(cfg_path.read_text())
        if meta.get("format") != _FORMAT:
            raise ArtifactError(
                f"{cfg_path}: format {meta.get('format')!r}, expected {_FORMAT!r}; "
                "rebuild the suggestion index"
            )
        obj = cls(**meta["params"])
        with np.load(directory / "index.npz", allow_pickle=False) as data:
            for a in _ARRAYS:
                setattr(obj, f"{a}_", data[a])
        obj.category_vocab_ = list(meta["category_vocab"])
        obj.market_vocab_ = list(meta["market_vocab"])
        obj.n_queries_ = int(meta["n_queries"])
        obj._post_load()
        return obj


def _vocab(values: Sequence[str | None] | None, n: int) -> tuple[list[str], np.ndarray]:
    """Integer codes (-1 for None) and the sorted vocabulary of a label column."""
    if values is None:
        return [], np.full(n, -1, dtype=np.int64)
    vocab = sorted({v for v in values if v is not None})
    index = {v: i for i, v in enumerate(vocab)}
    return vocab, np.asarray([index[v] if v is not None else -1 for v in values], dtype=np.int64)
