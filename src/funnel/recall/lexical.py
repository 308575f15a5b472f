"""BM25 search over item title, brand and category, for English and CJK queries.

Text is analysed in Python (:mod:`funnel.recall.text`) on both sides, so index and query use
exactly the same tokens. Each field is scored by BM25 with its own boost. Short latin queries
(at most ``fuzzy_max_words`` words) add fuzzy terms (the shared typo rule of :mod:`funnel.text`:
one edit, a transposition included) so "hiltn" still finds "hilton".

The index is our own (:mod:`funnel.recall._bm25`): one posting list per term with the boosted
BM25 impact over all fields precomputed, searched by a numba kernel. Marketplace titles use a
small vocabulary, so each query term covers a large share of the catalog and tantivy's
block-WAND had little to prune; adding precomputed numbers block by block is ~5x faster at 1M
items (k=300: p50 ~1.0 ms vs 5.4 ms) and gives tantivy's scores (the tests check it against
tantivy itself). Format 1 indexes (tantivy files) still load, with a warning, and search at
tantivy's speed until rebuilt.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from funnel._checks import check_is_fitted, positive_int, validate_params
from funnel.exceptions import ArtifactError
from funnel.recall._bm25 import Bm25Searcher, Postings, build_postings
from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.text import analyze, is_cjk, words
from funnel.text import MAX_TYPO_EDITS, MIN_TYPO_LEN

FORMAT = "funnel.lexical_index/2"
OLD_FORMAT = "funnel.lexical_index/1"  # tantivy files; still searchable, at tantivy's speed
FIELDS = ("title", "brand", "category")
_ARRAYS = ("offsets", "docs", "impacts", "masks", "market_codes")


class LexicalIndex:
    """BM25 with field boosts, CJK n-grams and fuzzy matching of short queries.

    Parameters
    ----------
    boosts : mapping of field -> float
        Per-field weight of the BM25 score (title, brand, category).
    fuzzy_max_words : int
        Queries with at most this many words also match within one typo (:mod:`funnel.text`).
    fuzzy_weight : float
        Score of a fuzzy match per field, relative to the field boost (constant: it does not
        depend on term frequency); 0 turns fuzzy matching off.
    min_fuzzy_len : int
        Words shorter than this are never fuzzed ("tv" would match everything).

    Example
    -------
    >>> items = pa.table({"item_id": ["a", "b"], "title": ["Hilton Paris", "北京饭店"],
    ...                   "brand": ["Hilton", ""], "category": ["hotel", "hotel"],
    ...                   "market": ["fr", "cn"]})
    >>> LexicalIndex().fit(items).search("hiltn", k=1).item_ids.tolist()
    ['a']
    """

    name = "lexical"

    def __init__(
        self,
        *,
        boosts: Mapping[str, float] | None = None,
        fuzzy_max_words: int = 2,
        fuzzy_weight: float = 0.5,
        min_fuzzy_len: int = MIN_TYPO_LEN,
    ) -> None:
        self.boosts = boosts
        self.fuzzy_max_words = fuzzy_max_words
        self.fuzzy_weight = fuzzy_weight
        self.min_fuzzy_len = min_fuzzy_len

    def get_params(self) -> dict[str, Any]:
        return {
            "boosts": dict(self.boosts) if self.boosts is not None else None,
            "fuzzy_max_words": self.fuzzy_max_words, "fuzzy_weight": self.fuzzy_weight,
            "min_fuzzy_len": self.min_fuzzy_len,
        }

    @property
    def field_boosts(self) -> dict[str, float]:
        boosts = {"title": 3.0, "brand": 2.0, "category": 1.5}
        boosts.update(self.boosts or {})
        return boosts

    def fit(self, items: pa.Table) -> LexicalIndex:
        """Index ``items`` (contract columns item_id, title, brand, category, market)."""
        validate_params(self.get_params(), {
            "boosts": (
                lambda v: v is None or (set(v) <= set(FIELDS) and all(b >= 0 for b in v.values())),
                f"None or a mapping from {FIELDS} to non-negative floats",
            ),
            "fuzzy_max_words": (lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
            "fuzzy_weight": (lambda v: v >= 0, "a float >= 0"),
            "min_fuzzy_len": (positive_int, "a positive int"),
        })
        if "item_id" not in items.column_names:
            raise ValueError(f"items must have an 'item_id' column; got {items.column_names}")
        cols = [
            items.column(name).to_pylist() if name in items.column_names
            else [None] * items.num_rows
            for name in FIELDS
        ]
        boosts = self.field_boosts
        postings = build_postings(cols, [boosts[f] for f in FIELDS])
        markets = (items.column("market").to_pylist() if "market" in items.column_names
                   else [None] * items.num_rows)
        self.markets_ = sorted({m or "" for m in markets})
        code = {m: i for i, m in enumerate(self.markets_)}
        codes = np.fromiter((code[m or ""] for m in markets), dtype=np.int32, count=len(markets))
        self.ids_ = np.array([str(i) for i in items.column("item_id").to_pylist()], dtype=object)
        self.index_: Any = Bm25Searcher(postings, codes, self.markets_)
        return self

    def _parse(self, text: str) -> tuple[list[str], list[tuple[str, int]]]:
        """Distinct query tokens, and the (word, edit distance) pairs to match fuzzily."""
        tokens = sorted(set(analyze(text)))
        ws = words(text)
        fuzzy = [] if len(ws) > self.fuzzy_max_words or self.fuzzy_weight <= 0 else [
            (w, MAX_TYPO_EDITS) for w in dict.fromkeys(ws)
            if not is_cjk(w) and len(w) >= self.min_fuzzy_len
        ]
        return tokens, fuzzy

    def search(self, text: str, k: int = 10, *, market: str | None = None) -> Candidates:
        """The ``k`` best items for query ``text`` (optionally only in ``market``)."""
        check_is_fitted(self, "index_")
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        if not positive_int(k):
            raise ValueError(f"The 'k' parameter must be a positive int. Got {k!r} instead.")
        tokens, fuzzy = self._parse(text)
        if not tokens and not fuzzy:
            return Candidates.empty()
        boosts = self.field_boosts
        if isinstance(self.index_, Bm25Searcher):
            code = -1 if market is None else self.index_.market_id.get(market)
            if code is None:  # a market no item is in
                return Candidates.empty()
            rows, scores = self.index_.search(
                tokens, fuzzy, [boosts[f] * self.fuzzy_weight for f in FIELDS], k, code,
            )
        else:  # an index loaded from format 1
            rows, scores = self.index_.search(tokens, fuzzy, boosts, self.fuzzy_weight, k, market)
        if not len(rows):
            return Candidates.empty()
        return Candidates(self.ids_[rows], scores)

    def candidates(self, request: RecallRequest) -> Candidates:
        """CandidateSource: BM25 hits for ``request.query`` in ``request.market``."""
        if not request.query:
            return Candidates.empty()
        return self.search(request.query, request.k, market=request.market)

    def save(self, path: Path | str) -> None:
        """Write config.json, terms.json, ids.json and postings.npz through a temp dir + rename."""
        check_is_fitted(self, "index_")
        if not isinstance(self.index_, Bm25Searcher):
            raise ArtifactError(
                f"this LexicalIndex was loaded from format {OLD_FORMAT!r} and cannot be saved "
                f"in {FORMAT!r}: rebuild it with `funnel build` (or fit it again)"
            )
        from funnel.recall.vector_index import _atomic_dir_write

        p: Postings = self.index_.postings
        index = self.index_

        def write(tmp: Path) -> None:
            cfg = {"format": FORMAT, "params": self.get_params(), "fields": list(FIELDS),
                   "n_rows": p.n_rows, "n_terms": p.n_terms, "markets": self.markets_}
            (tmp / "config.json").write_text(json.dumps(cfg))
            (tmp / "terms.json").write_text(json.dumps(p.terms, ensure_ascii=False))
            (tmp / "ids.json").write_text(json.dumps(list(self.ids_), ensure_ascii=False))
            np.savez(tmp / "postings.npz", offsets=p.offsets, docs=p.docs, impacts=p.impacts,
                     masks=p.masks, market_codes=index.market_codes)

        _atomic_dir_write(Path(path), write)

    @classmethod
    def load(cls, path: Path | str) -> LexicalIndex:
        path = Path(path)
        cfg_path = path / "config.json"
        if not cfg_path.exists():
            raise ArtifactError(f"{cfg_path}: missing; not a saved LexicalIndex")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("format") == OLD_FORMAT:
            return cls._load_tantivy(path, cfg)
        if cfg.get("format") != FORMAT:
            raise ArtifactError(
                f"{cfg_path}: expected format {FORMAT!r}; got {cfg.get('format')!r}"
            )
        obj = cls(**cfg["params"])
        terms = json.loads((path / "terms.json").read_text())
        ids = json.loads((path / "ids.json").read_text())
        with np.load(path / "postings.npz", allow_pickle=False) as z:
            missing = set(_ARRAYS) - set(z.files)
            if missing:
                raise ArtifactError(f"{path / 'postings.npz'}: missing arrays {sorted(missing)}")
            arrays = {name: z[name] for name in _ARRAYS}
        n_rows, n_lists = cfg["n_rows"], len(terms)
        if (len(ids) != n_rows or arrays["market_codes"].shape != (n_rows,)
                or arrays["offsets"].shape != (n_lists + 1,)
                or not arrays["docs"].shape == arrays["impacts"].shape == arrays["masks"].shape
                or int(arrays["offsets"][-1]) != arrays["docs"].shape[0]):
            raise ArtifactError(
                f"{path}: inconsistent LexicalIndex files ({len(ids)} ids, {n_rows} rows, "
                f"{len(terms)} terms, offsets {arrays['offsets'].shape}, docs "
                f"{arrays['docs'].shape}); rebuild it with `funnel build`"
            )
        postings = Postings(terms, arrays["offsets"], arrays["docs"], arrays["impacts"],
                            arrays["masks"], n_rows)
        obj.markets_ = list(cfg["markets"])
        obj.ids_ = np.array(ids, dtype=object)
        obj.index_ = Bm25Searcher(postings, arrays["market_codes"], obj.markets_)
        return obj

    @classmethod
    def _load_tantivy(cls, path: Path, cfg: dict[str, Any]) -> LexicalIndex:
        from funnel.recall._bm25_tantivy import TantivyBM25

        warnings.warn(
            f"{path}: LexicalIndex format {OLD_FORMAT!r} (tantivy) searches ~5x slower than "
            f"{FORMAT!r}; rebuild it with `funnel build`",
            UserWarning, stacklevel=3,
        )
        params = {k: v for k, v in cfg["params"].items() if k != "heap_bytes"}
        obj = cls(**params)
        obj.index_ = TantivyBM25.open(path / "tantivy")
        obj.ids_ = np.array(json.loads((path / "ids.json").read_text()), dtype=object)
        obj.markets_ = []
        return obj

    def search_many(self, texts: Sequence[str], k: int = 10) -> list[Candidates]:
        """One :meth:`search` per text."""
        return [self.search(t, k) for t in texts]
