"""The catalog snapshot the server answers from: item attributes by id, markets, demo users.

Written into the artifact by ``funnel build`` (component ``catalog``) so a server never reads the
event store, and a reload swaps catalog and models together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
        return np.array([self.row.get(i, -1) for i in item_ids], dtype=np.int64)

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

