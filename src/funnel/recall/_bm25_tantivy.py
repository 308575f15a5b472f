"""The same field-boosted BM25 + fuzzy query on tantivy: parity reference and old-format reader.

``LexicalIndex`` used tantivy until format ``funnel.lexical_index/2``. It stays for three
reasons: the tests check our scores against it, the benchmark times against it, and indexes
saved in format 1 still load (searching at tantivy's speed). Text arrives already analysed
(space-joined :func:`funnel.recall.text.analyze` tokens), indexed with the whitespace tokenizer.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tantivy

FIELDS = ("title", "brand", "category")


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    for name in FIELDS:
        sb.add_text_field(name, tokenizer_name="whitespace", index_option="freq")
    sb.add_text_field("market", tokenizer_name="raw", index_option="basic")
    sb.add_integer_field("row", fast=True, indexed=False)
    return sb.build()


class TantivyBM25:
    """A tantivy index of analysed fields with a ``row`` fast field (the caller's row number)."""

    def __init__(self, index: tantivy.Index, path: Path) -> None:
        self.index = index
        self.path = path

    @classmethod
    def build(cls, analysed: Mapping[str, Sequence[str]], markets: Sequence[str | None],
              heap_bytes: int = 64_000_000) -> TantivyBM25:
        """Index rows of space-joined tokens per field in a temp dir removed with the object."""
        tmp = Path(tempfile.mkdtemp(prefix="funnel-lexical-"))
        index = tantivy.Index(_schema(), path=str(tmp))
        writer = index.writer(heap_size=heap_bytes, num_threads=1)
        for row, market in enumerate(markets):
            doc: dict[str, object] = {name: analysed[name][row] for name in FIELDS}
            doc["market"] = market or ""
            doc["row"] = row
            writer.add_document(tantivy.Document(**doc))
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        obj = cls(index, tmp)
        weakref.finalize(obj, shutil.rmtree, tmp, True)
        return obj

    @classmethod
    def open(cls, path: Path) -> TantivyBM25:
        return cls(tantivy.Index.open(str(path)), path)

    def search(
        self,
        tokens: Sequence[str],
        fuzzy: Sequence[tuple[str, int]],
        boosts: Mapping[str, float],
        fuzzy_weight: float,
        k: int,
        market: str | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) best first; the market clause filters without adding to the score."""
        schema = self.index.schema
        should: list[tuple[tantivy.Occur, tantivy.Query]] = []
        for name, boost in boosts.items():
            if boost <= 0:
                continue
            for tok in tokens:
                q = tantivy.Query.term_query(schema, name, tok, index_option="freq")
                should.append((tantivy.Occur.Should, tantivy.Query.boost_query(q, boost)))
            if fuzzy_weight <= 0:
                continue
            for w, distance in fuzzy:
                q = tantivy.Query.fuzzy_term_query(schema, name, w, distance)
                should.append(
                    (tantivy.Occur.Should, tantivy.Query.boost_query(q, boost * fuzzy_weight))
                )
        if not should:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        query = tantivy.Query.boolean_query(should)
        if market is not None:
            only = tantivy.Query.const_score_query(
                tantivy.Query.term_query(schema, "market", market), 0.0
            )
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), (tantivy.Occur.Must, only)]
            )
        searcher = self.index.searcher()
        hits = searcher.search(query, limit=k, count=False).hits
        if not hits:
            return np.empty(0, np.int32), np.empty(0, np.float32)
        rows = searcher.fast_field_values("row", [addr for _, addr in hits])
        return (np.asarray(rows, dtype=np.int32),
                np.array([score for score, _ in hits], dtype=np.float32))
