"""The catalog snapshot the server answers from: item attributes by id, markets, demo users.

Written into the artifact by ``funnel build`` (component ``catalog``) so a server never reads the
event store, and a reload swaps catalog and models together.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from funnel.artifacts import ArtifactBuild
from funnel.exceptions import ArtifactError
from funnel.workspace import Workspace

ITEM_COLUMNS = ("item_id", "title", "category", "brand", "market", "price", "bid")


def build_catalog(
    workspace: Workspace, build: ArtifactBuild, n_demo_users: int = 12
) -> dict[str, Any]:
    """Snapshot items and a few active users into ``<build>/catalog``."""
    con = workspace.connect(read_only=True)
    try:
        items = con.sql(
            f"SELECT {', '.join(ITEM_COLUMNS)} FROM items ORDER BY item_id"
        ).to_arrow_table()
        markets = [
            r[0]
            for r in con.execute(
                "SELECT market FROM items WHERE market IS NOT NULL "
                "GROUP BY 1 ORDER BY count(*) DESC"
            ).fetchall()
        ]
        users = [
            r[0]
            for r in con.execute(
                "SELECT user_id FROM events WHERE event_type IN ('click', 'booking') "
                f"GROUP BY 1 ORDER BY count(*) DESC, user_id LIMIT {int(n_demo_users)}"
            ).fetchall()
        ]
    finally:
        con.close()
    if items.num_rows == 0:
        raise ArtifactError(
            f"{workspace.store_path}: no items in the store; ingest a catalog first "
            "('funnel generate' or 'funnel ingest items.parquet')"
        )
    out = build.component("catalog")
    pq.write_table(items, out / "items.parquet")
    (out / "meta.json").write_text(
        json.dumps({"markets": markets, "demo_users": users}, ensure_ascii=False, indent=1)
    )
    return {"items": items.num_rows, "markets": len(markets)}


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
        get = self.row.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))

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
        return values[codes[rows]].tolist()  # type: ignore[no-any-return]

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
        r = self.row[item_id]
        out = {name: _plain(col[r]) for name, col in self.columns.items()}
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value

