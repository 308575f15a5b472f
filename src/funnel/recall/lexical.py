"""BM25 search over item title, brand and category on tantivy, for English and CJK queries.

Text is analysed in Python (:mod:`funnel.recall.text`) and indexed pre-tokenised with tantivy's
whitespace tokenizer, so index and query sides use exactly the same analysis. Each field is
scored by BM25 with its own boost. Short latin queries (at most ``fuzzy_max_words`` words) add
Levenshtein-1 fuzzy terms (distance 2 for words of 8+ letters) so "hiltn" still finds "hilton".
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import tantivy

from funnel._checks import check_is_fitted, positive_int, validate_params
from funnel.exceptions import ArtifactError
from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.text import analyze, is_cjk, words

FORMAT = "funnel.lexical_index/1"
FIELDS = ("title", "brand", "category")


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    for name in FIELDS:
        sb.add_text_field(name, tokenizer_name="whitespace", index_option="freq")
    sb.add_text_field("market", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("row", fast=True, indexed=False)
    return sb.build()


class LexicalIndex:
    """BM25 with field boosts, CJK n-grams and fuzzy matching of short queries.

    Parameters
    ----------
    boosts : mapping of field -> float
        Per-field weight of the BM25 score (title, brand, category).
    fuzzy_max_words : int
        Queries with at most this many latin words also match within edit distance 1-2.
    fuzzy_weight : float
        Boost of a fuzzy match relative to the exact term (fuzzy scores are constant).
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
        min_fuzzy_len: int = 4,
        heap_bytes: int = 64_000_000,
    ) -> None:
        self.boosts = boosts
        self.fuzzy_max_words = fuzzy_max_words
        self.fuzzy_weight = fuzzy_weight
        self.min_fuzzy_len = min_fuzzy_len
        self.heap_bytes = heap_bytes

    def get_params(self) -> dict[str, Any]:
        return {
            "boosts": dict(self.boosts) if self.boosts is not None else None,
            "fuzzy_max_words": self.fuzzy_max_words, "fuzzy_weight": self.fuzzy_weight,
            "min_fuzzy_len": self.min_fuzzy_len, "heap_bytes": self.heap_bytes,
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
            "heap_bytes": (lambda v: positive_int(v) and v >= 15_000_000, "an int >= 15000000"),
        })
        if "item_id" not in items.column_names:
            raise ValueError(f"items must have an 'item_id' column; got {items.column_names}")
        cols = {
            name: (items.column(name).to_pylist() if name in items.column_names
                   else [None] * items.num_rows)
            for name in (*FIELDS, "market")
        }
        ids = [str(i) for i in items.column("item_id").to_pylist()]
        self._tmp = Path(tempfile.mkdtemp(prefix="funnel-lexical-"))
        weakref.finalize(self, shutil.rmtree, self._tmp, True)
        index = tantivy.Index(_schema(), path=str(self._tmp))
        writer = index.writer(heap_size=self.heap_bytes, num_threads=1)
        for row in range(len(ids)):
            doc = {name: " ".join(analyze(cols[name][row])) for name in FIELDS}
            doc["market"] = cols["market"][row] or ""
            doc["row"] = row
            writer.add_document(tantivy.Document(**doc))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        self.ids_ = np.array(ids, dtype=object)
        self.index_ = index
        self.path_ = self._tmp
        return self

    def _query(self, text: str, market: str | None) -> tantivy.Query | None:
        schema = self.index_.schema
        should: list[tuple[tantivy.Occur, tantivy.Query]] = []
        tokens = sorted(set(analyze(text)))
        fuzzy = [
            w for w in dict.fromkeys(words(text))
            if not is_cjk(w) and len(w) >= self.min_fuzzy_len
        ]
        if len(words(text)) > self.fuzzy_max_words:
            fuzzy = []
        for name, boost in self.field_boosts.items():
            if boost <= 0:
                continue
            for tok in tokens:
                q = tantivy.Query.term_query(schema, name, tok, index_option="freq")
                should.append((tantivy.Occur.Should, tantivy.Query.boost_query(q, boost)))
            for w in fuzzy:
                q = tantivy.Query.fuzzy_term_query(schema, name, w, 2 if len(w) >= 8 else 1)
                weight = boost * self.fuzzy_weight
                should.append((tantivy.Occur.Should, tantivy.Query.boost_query(q, weight)))
        if not should:
            return None
        query = tantivy.Query.boolean_query(should)
        if market is not None:
            must = tantivy.Query.term_query(schema, "market", market)
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), (tantivy.Occur.Must, must)]
            )
        return query

    def search(self, text: str, k: int = 10, *, market: str | None = None) -> Candidates:
        """The ``k`` best items for query ``text`` (optionally only in ``market``)."""
        check_is_fitted(self, "index_")
        if not isinstance(text, str):
            raise TypeError(f"text must be a str; got {type(text).__name__}")
        if not positive_int(k):
            raise ValueError(f"The 'k' parameter must be a positive int. Got {k!r} instead.")
        query = self._query(text, market)
        if query is None:
            return Candidates.empty()
        searcher = self.index_.searcher()
        hits = searcher.search(query, limit=k, count=False).hits
        if not hits:
            return Candidates.empty()
        rows = searcher.fast_field_values("row", [addr for _, addr in hits])
        scores = np.array([score for score, _ in hits], dtype=np.float32)
        return Candidates(self.ids_[np.asarray(rows, dtype=np.int64)], scores)

    def candidates(self, request: RecallRequest) -> Candidates:
        """CandidateSource: BM25 hits for ``request.query`` in ``request.market``."""
        if not request.query:
            return Candidates.empty()
        return self.search(request.query, request.k, market=request.market)

    def save(self, path: Path | str) -> None:
        """Copy the committed tantivy files plus config and ids through a temp dir + rename."""
        check_is_fitted(self, "index_")
        from funnel.recall.vector_index import _atomic_dir_write

        def write(tmp: Path) -> None:
            shutil.copytree(self.path_, tmp / "tantivy")
            cfg = {"format": FORMAT, "params": self.get_params()}
            (tmp / "config.json").write_text(json.dumps(cfg))
            (tmp / "ids.json").write_text(json.dumps(list(self.ids_), ensure_ascii=False))

        _atomic_dir_write(Path(path), write)

    @classmethod
    def load(cls, path: Path | str) -> LexicalIndex:
        path = Path(path)
        cfg_path = path / "config.json"
        if not cfg_path.exists():
            raise ArtifactError(f"{cfg_path}: missing; not a saved LexicalIndex")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("format") != FORMAT:
            raise ArtifactError(
                f"{cfg_path}: expected format {FORMAT!r}; got {cfg.get('format')!r}"
            )
        obj = cls(**cfg["params"])
        obj.index_ = tantivy.Index.open(str(path / "tantivy"))
        obj.ids_ = np.array(json.loads((path / "ids.json").read_text()), dtype=object)
        obj.path_ = path / "tantivy"
        return obj

    def search_many(self, texts: Sequence[str], k: int = 10) -> list[Candidates]:
        """One :meth:`search` per text (tantivy searches are already multi-segment parallel)."""
        return [self.search(t, k) for t in texts]
