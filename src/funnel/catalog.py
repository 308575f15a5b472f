"""The catalog snapshot the server answers from: item attributes by id, markets, demo users.

Written into the artifact by ``funnel build`` (component ``catalog``) so a server never reads the
event store, and a reload swaps catalog and models together.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from funnel.artifacts import ArtifactBuild
from funnel.exceptions import ArtifactError
from funnel.workspace import Workspace

ITEM_COLUMNS = ("item_id", "title", "category", "brand", "market", "price", "bid")
SEEN_COLUMNS = ("first_seen_ms", "last_seen_ms")
"""Epoch ms of an item's first and last event (null for items no event cites)."""

CATALOG_SQL = """
WITH seen AS (
    SELECT item_id,
           arg_max(market, ts) FILTER (WHERE market IS NOT NULL) AS market,
           arg_max(price, ts) FILTER (WHERE price IS NOT NULL) AS price,
           epoch_ms(min(ts)) AS first_seen_ms, epoch_ms(max(ts)) AS last_seen_ms
    FROM events WHERE item_id IS NOT NULL GROUP BY item_id
)
SELECT coalesce(it.item_id, seen.item_id) AS item_id,
       it.title, it.category, it.brand,
       coalesce(it.market, seen.market) AS market,
       coalesce(it.price, seen.price) AS price,
       it.bid,
       seen.first_seen_ms, seen.last_seen_ms,
       it.item_id IS NULL AS from_events
FROM items it FULL OUTER JOIN seen ON it.item_id = seen.item_id
ORDER BY 1
"""
"""The items table, plus every item id the events cite that it lacks (a click log without a
catalog: YooChoose, DIGINETICA, Taobao). Derived items take market and price from their most
recent event that carries one; an item of the table keeps its attributes, and only its null
market / price are filled from its events."""


def build_catalog(
    workspace: Workspace, build: ArtifactBuild, n_demo_users: int = 12
) -> dict[str, Any]:
    """Snapshot items (the items table joined with the item ids of the events) and a few active
    users into ``<build>/catalog``.

    Metrics: ``items``, ``markets`` and ``derived_from_events`` (items only the events know).
    """
    con = workspace.connect(read_only=True)
    try:
        table = con.sql(CATALOG_SQL).to_arrow_table()
        users = [
            r[0]
            for r in con.execute(
                "SELECT user_id FROM events WHERE event_type IN ('click', 'booking') "
                f"GROUP BY 1 ORDER BY count(*) DESC, user_id LIMIT {int(n_demo_users)}"
            ).fetchall()
        ]
    finally:
        con.close()
    if table.num_rows == 0:
        raise ArtifactError(
            f"{workspace.store_path}: no items and no item events in the store; ingest a "
            "catalog or an event log first ('funnel generate' or 'funnel ingest FILE')"
        )
    derived = int(pc.sum(table.column("from_events")).as_py() or 0)
    items = table.drop_columns(["from_events"])
    market = items.column("market")
    counts = pc.value_counts(market.filter(pc.is_valid(market))).to_pylist()
    markets = [c["values"] for c in sorted(counts, key=lambda c: (-c["counts"], c["values"]))]
    out = build.component("catalog")
    pq.write_table(items, out / "items.parquet")
    (out / "meta.json").write_text(
        json.dumps({"markets": markets, "demo_users": users,
                    "derived_from_events": derived}, ensure_ascii=False, indent=1)
    )
    return {"items": items.num_rows, "markets": len(markets), "derived_from_events": derived}


@dataclass
class Catalog:
    """Item attributes as aligned arrays plus an id -> row map (read-only after load)."""

    ids: np.ndarray  # (n,) object
    columns: dict[str, np.ndarray]
    row: dict[str, int]
    markets: list[str]
    demo_users: list[str]
    _coded: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _index: RowIndex | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        ids = self.ids.tolist()
        if ids and all(type(i) is str for i in ids):
            self._index = RowIndex.build(ids, self.row)

    @classmethod
    def load(cls, artifact_dir: Path) -> Catalog:
        root = artifact_dir / "catalog"
        path = root / "items.parquet"
        if not path.exists():
            raise ArtifactError(f"{path}: missing; run 'funnel build' first")
        table = pq.read_table(path)
        meta = json.loads((root / "meta.json").read_text())
        columns = {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
        }
        ids = columns["item_id"].astype(object)
        return cls(
            ids=ids,
            columns=columns,
            row={item: i for i, item in enumerate(ids.tolist())},
            markets=list(meta.get("markets", [])),
            demo_users=list(meta.get("demo_users", [])),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.row

    def rows(self, item_ids: list[str]) -> np.ndarray:
        """Row index per id (-1 for unknown ids)."""
        if self._index is not None:
            return self._index.rows(item_ids)
        get = self.row.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))

    def id_rank(self) -> np.ndarray | None:
        """``(n,) int64``: the rank of each row's id among the catalog's ids in ``sorted``
        order: integer keys for "ties by id" orders. None unless every id is a str, or if
        an id ends in NUL (numpy's fixed-width text, which the merger's order by id uses,
        drops trailing NULs: there ``"a"`` and ``"a\\0"`` would tie)."""
        if self._index is None:
            return None
        ids = self.ids.tolist()
        if any(i.endswith("\0") for i in ids):
            return None
        text = np.asarray(ids, dtype=str)
        rank = np.empty(len(text), dtype=np.int64)
        rank[np.argsort(text, kind="stable")] = np.arange(len(text), dtype=np.int64)
        return rank

    def coded(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Column ``name`` as (int32 code per row, distinct values + a trailing None): code -1
        (missing) reads the None. ``values[codes[rows]]`` equals ``columns[name][rows]`` for a
        text column, but a request then reads 4 bytes per candidate and a few hot objects,
        not one string object per candidate scattered over a million (built once, cached)."""
        found = self._coded.get(name)
        if found is None:
            import pandas as pd

            if name not in self.columns:
                raise KeyError(f"catalog has no column {name!r}; columns are "
                               f"{sorted(self.columns)}")
            codes, uniques = pd.factorize(pd.Series(self.columns[name], dtype=object))
            values = np.empty(len(uniques) + 1, dtype=object)
            values[:-1] = uniques.tolist()
            values[-1] = None
            found = (codes.astype(np.int32), values)
            with self._lock:
                self._coded[name] = found
        return found

    def take_text(self, name: str, rows: np.ndarray) -> list[Any]:
        """``columns[name][rows].tolist()`` for a text column, read through :meth:`coded`."""
        codes, values = self.coded(name)
        return values[codes[rows]].tolist()

    def attributes(self, item_ids: list[str]) -> dict[str, np.ndarray]:
        """Attribute columns for ``item_ids`` (None/NaN where unknown)."""
        rows = self.rows(item_ids)
        known = rows >= 0
        out: dict[str, np.ndarray] = {}
        for name, col in self.columns.items():
            values = np.empty(len(rows), dtype=object)
            values[known] = col[rows[known]]
            values[~known] = None
            out[name] = values
        return out

    def describe(self, item_id: str) -> dict[str, Any]:
        """Every column of one item, as plain JSON values (KeyError for unknown ids)."""
        return self.describe_many([item_id], tuple(self.columns))[0]

    def describe_many(self, item_ids: list[str], names: tuple[str, ...]) -> list[dict[str, Any]]:
        """``{name: describe(i)[name] for name in names}`` for each id, one take per column
        (a response describes its 20 items; per-item dicts of every column cost ~0.3 ms)."""
        rows = self.rows(item_ids)
        if len(rows) and rows.min() < 0:
            raise KeyError(item_ids[int(np.argmin(rows))])
        picked = {name: [_plain(v) for v in self.columns[name][rows].tolist()]
                  for name in names if name in self.columns}
        return [{name: values[i] for name, values in picked.items()}
                for i in range(len(item_ids))]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


class RowIndex:
    """``{id: row}.get(id, -1)`` for a list of ids, with fewer cache misses per id.

    A million-entry dict costs 3-4 cache misses per lookup (index slot, entry, stored key,
    value object); a request looks up ~1000 candidates, so at 1M items the misses, not the
    Python, are the cost. Here a lookup probes one open-addressing table of (str hash, row)
    pairs (one cache line) and checks the id against a fixed-width copy of the catalog's ids
    (one more): the answer is exact - an id whose hash matches but whose text differs (a hash
    collision) is looked up in ``fallback``, the dict this index mirrors.
    """

    MAX_ID_CHARS = 64
    """Longer ids make the fixed-width copy too large (4 bytes per char per item): dict then."""

    @classmethod
    def build(cls, ids: list[str], fallback: dict[str, int]) -> RowIndex | None:
        """The index of ``ids``, or None when an id is longer than :attr:`MAX_ID_CHARS`."""
        if max(map(len, ids), default=0) > cls.MAX_ID_CHARS:
            return None
        return cls(ids, fallback)

    def __init__(self, ids: list[str], fallback: dict[str, int]) -> None:
        n = len(ids)
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=n)
        size = 1 << max(4, int(2 * n - 1).bit_length())  # at most half full
        self._table = np.full((size, 2), -1, dtype=np.int64)  # (hash, row) per slot
        _probe_kernels()[0](self._table, hashes)
        self._text = np.array(ids, dtype=str)  # fixed width: the longest id
        self._lens = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        self._fallback = fallback

    def rows(self, item_ids: list[str]) -> np.ndarray:
        """Row per id, -1 for ids not in the catalog."""
        n = len(item_ids)
        try:
            hashes = np.fromiter(map(hash, item_ids), dtype=np.int64, count=n)
            lens = np.fromiter(map(len, item_ids), dtype=np.int64, count=n)
        except TypeError:  # not all str: no id of this catalog
            get = self._fallback.get
            return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=n)
        rows = _probe_kernels()[1](self._table, hashes)
        found = np.flatnonzero(rows >= 0)
        if len(found):
            at = rows[found]
            text = np.array(item_ids, dtype=self._text.dtype)[found]  # longer ids: cut, and
            same = (self._lens[at] == lens[found]) & (self._text[at] == text)  # caught here
            for i in found[~same].tolist():  # a hash collision: ask the dict
                rows[i] = self._fallback.get(item_ids[i], -1)
        return rows


@lru_cache(maxsize=1)
def _probe_kernels() -> tuple[Any, Any]:
    """(insert, lookup) over a linear-probing table of (hash, row) slots, compiled on first use."""
    import numba as nb

    @nb.njit(nogil=True)
    def insert(table, hashes):  # type: ignore[no-untyped-def]  # numba-compiled, typed per call
        mask = table.shape[0] - 1
        for row in range(hashes.shape[0]):
            slot = hashes[row] & mask
            while table[slot, 1] >= 0:
                slot = (slot + 1) & mask
            table[slot, 0] = hashes[row]
            table[slot, 1] = row

    @nb.njit(nogil=True)
    def lookup(table, hashes):  # type: ignore[no-untyped-def]  # numba-compiled, typed per call
        mask = table.shape[0] - 1
        out = np.full(hashes.shape[0], -1, np.int64)
        for i in range(hashes.shape[0]):
            h = hashes[i]
            slot = h & mask
            while table[slot, 1] >= 0:
                if table[slot, 0] == h:
                    out[i] = table[slot, 1]
                    break
                slot = (slot + 1) & mask
        return out

    return insert, lookup
