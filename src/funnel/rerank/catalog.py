"""Per-item attributes and embeddings looked up by id at re-rank time.

The serving path hands the re-ranker only ids and scores; the catalog supplies what the
diversity and scatter steps compare (embeddings from ``<artifact>/embeddings/``, brand /
seller / category / price band from the item store). Saved as Parquet, never pickle.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from funnel.exceptions import ArtifactError
from funnel.rerank.base import ItemFeatures
from funnel.vectors import AlignedVectors, VectorTable

ATTRIBUTES_FILE = "item_attributes.parquet"
DEFAULT_ATTRIBUTES = ("category", "brand", "seller", "market", "price_band")
N_PRICE_BANDS = 5


@dataclass
class ItemCatalog:
    """Attribute columns (aligned with ``item_ids``) and optional item vectors.

    A server aligns it to its catalog once at load (:meth:`aligned_to`): rows are then the
    catalog's rows, and a request hands it the rows it already has."""

    item_ids: list[str]
    attributes: dict[str, list[str | None]]
    vectors: VectorTable | None = None
    _row: dict[str, int] = field(default_factory=dict, repr=False)
    _columns: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict,
                                                                repr=False)
    _vectors: AlignedVectors | None = field(default=None, repr=False)
    _lookup: Callable[[list[str]], np.ndarray] | None = field(default=None, repr=False)
    """Aligned: the item table's id -> row lookup, instead of ``_row``."""
    _known: np.ndarray | None = field(default=None, repr=False)
    """Aligned: per row (and a trailing False for row -1), whether the attributes have it."""

    def __post_init__(self) -> None:
        # Lookups are one dict pass + numpy takes: each column is an integer code per item
        # into its distinct values, ending in a None sentinel, so an unknown id (row -1)
        # reads None; vectors are read through a row map into the vector table (a zero vector
        # for row -1). Codes keep a request's take to 4 bytes per item and column; the
        # values it then reads are a few hot objects.
        import pandas as pd

        if self._lookup is not None:  # built by aligned_to
            return
        self._row = {item: i for i, item in enumerate(self.item_ids)}
        self._columns = {}
        for name, col in self.attributes.items():
            codes, uniques = pd.factorize(pd.Series(list(col), dtype=object))
            values = np.empty(len(uniques) + 1, dtype=object)
            values[: len(uniques)] = uniques.tolist()
            values[-1] = None
            # missing values (code -1) and the sentinel row n both read the None at the end
            self._columns[name] = (values, np.append(codes, -1).astype(np.int32))
        if self.vectors is not None:
            self._vectors = self.vectors.aligned_to(self.item_ids)

    def aligned_to(
        self, item_ids: Sequence[str], *, lookup: Callable[[list[str]], np.ndarray],
        vectors: AlignedVectors | None = None,
    ) -> ItemCatalog:
        """This catalog with the rows of another item table (``item_ids``, the serving
        catalog's; ``lookup``: its id -> row function, -1 for ids it lacks): row ``r`` holds
        the attributes of ``item_ids[r]``, None for items this catalog lacks (as an unknown id
        reads today), and their vectors from ``vectors`` (the same table read by those rows:
        shared, not copied) - zero where this catalog lacks the item, as before. ``rows``
        then goes through ``lookup``; this catalog is left as it was."""
        own = self.rows(item_ids)  # item-table row -> row here (-1: not here)
        known = own >= 0
        out = object.__new__(ItemCatalog)
        out.item_ids = [str(i) for i in item_ids]
        out.vectors = self.vectors
        out._row = {}
        # codes end in -1, so own row -1 reads the None sentinel; one more -1 for row -1
        out._columns = {name: (values, np.append(codes[own], -1).astype(np.int32))
                        for name, (values, codes) in self._columns.items()}
        out.attributes = {name: values[codes[:-1]].tolist()
                          for name, (values, codes) in out._columns.items()}
        out._vectors = None
        if self._vectors is not None:
            view = vectors if vectors is not None and vectors.table is self._vectors.table \
                and len(vectors) == len(item_ids) else self._vectors.table.aligned_to(item_ids)
            out._vectors = view.restricted(known)
        out._lookup = lookup
        out._known = np.append(known, False)
        return out

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each id in this catalog (-1 for unknown ids), for :meth:`features_at`."""
        if self._lookup is not None and self._known is not None:
            rows = self._lookup([str(i) for i in item_ids])
            return np.where(self._known[rows], rows, -1)
        get = self._row.get
        return np.fromiter((get(str(i), -1) for i in item_ids), np.int64, len(item_ids))

    def features(self, item_ids: Sequence[str], *, vectors: bool = True) -> ItemFeatures:
        """Features of ``item_ids`` (unknown ids: attributes None, a zero vector; no vectors
        at all with ``vectors=False``)."""
        return self._at(self.rows(item_ids), vectors)

    def features_at(self, rows: np.ndarray, *, vectors: bool = True) -> ItemFeatures:
        """Features of the items at ``rows`` (from :meth:`rows`; -1: unknown), without a
        lookup by id: a server aligns this catalog to its own at load and hands its rows."""
        rows = np.asarray(rows)
        n = len(self.item_ids)
        if rows.ndim != 1 or rows.dtype.kind not in "iu" or (
            len(rows) and (rows.min() < -1 or rows.max() >= n)
        ):
            raise ValueError(
                f"'rows' must be a 1-D integer array of catalog rows in [-1, {n}); got shape "
                f"{rows.shape}, dtype {rows.dtype}"
            )
        return self._at(rows.astype(np.int64, copy=False), vectors)

    def _at(self, rows: np.ndarray, vectors: bool) -> ItemFeatures:
        attrs = {name: values[codes[rows]].tolist()
                 for name, (values, codes) in self._columns.items()}
        vecs = None if self._vectors is None or not vectors else self._vectors.take(rows)
        return ItemFeatures(vectors=vecs, attributes=attrs)

    @classmethod
    def from_items(cls, items: pa.Table, vectors: VectorTable | None = None) -> ItemCatalog:
        """Build from an ``items`` table of the data contract.

        ``seller`` and ``price_band`` come from the ``attributes`` JSON when present; without a
        band, ``price_band`` is the price quintile within the item's category (``p0`` =
        cheapest), so "no more than two budget items in a row" means the same everywhere.
        """
        ids = [str(v) for v in items.column("item_id").to_pylist()]
        attrs: dict[str, list[str | None]] = {}
        for name in ("category", "brand", "market"):
            if name in items.column_names:
                attrs[name] = [None if v is None else str(v)
                               for v in items.column(name).to_pylist()]
        if "attributes" in items.column_names:
            extra: dict[str, list[str | None]] = {"seller": [], "price_band": []}
            for raw in items.column("attributes").to_pylist():
                try:
                    obj = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    obj = {}
                obj = obj if isinstance(obj, dict) else {}
                for key, col in extra.items():
                    v = obj.get(key)
                    col.append(None if v is None else str(v))
            attrs.update({k: v for k, v in extra.items() if any(x is not None for x in v)})
        if "price_band" not in attrs and "price" in items.column_names:
            attrs["price_band"] = price_bands(
                items.column("price").to_pylist(), attrs.get("category", [None] * len(ids)))
        return cls(ids, attrs, vectors)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        cols = {"item_id": pa.array(self.item_ids, pa.string())}
        cols.update({n: pa.array(v, pa.string()) for n, v in self.attributes.items()})
        pq.write_table(pa.table(cols), directory / ATTRIBUTES_FILE)

    @classmethod
    def load(cls, directory: Path, vectors: VectorTable | None = None) -> ItemCatalog:
        path = directory / ATTRIBUTES_FILE
        if not path.exists():
            raise ArtifactError(f"{path}: missing; rebuild with 'funnel rerank-build'")
        table = pq.read_table(path)
        ids = [str(v) for v in table.column("item_id").to_pylist()]
        attrs = {n: table.column(n).to_pylist() for n in table.column_names if n != "item_id"}
        return cls(ids, attrs, vectors)


def price_bands(prices: Sequence[float | None], groups: Sequence[str | None]) -> list[str | None]:
    """Price quintile (``"p0"`` cheapest .. ``"p4"``) within each group; None stays None."""
    p = pa.array(prices, pa.float64())
    out: list[str | None] = [None] * len(p)
    by_group: dict[str | None, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    values = np.array([np.nan if v is None else v for v in p.to_pylist()], dtype=np.float64)
    for rows in by_group.values():
        idx = np.array(rows, dtype=np.int64)
        vals = values[idx]
        ok = np.isfinite(vals)
        if not ok.any():
            continue
        good = vals[ok]
        # rank of each price among the group's (ties share the lowest rank) -> quintile
        ranks = np.searchsorted(np.sort(good), good, side="left")
        bands = (N_PRICE_BANDS * ranks) // good.size
        for r, b in zip(idx[ok], bands, strict=True):
            out[int(r)] = f"p{int(b)}"
    return out
