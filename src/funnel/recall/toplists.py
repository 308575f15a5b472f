"""Key -> best items lists in CSR form: the learned state of co-visitation, popularity and
query -> items, saved as JSON (keys, item vocabulary) plus npz (offsets, item codes, scores)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from funnel.exceptions import ArtifactError


@dataclass(frozen=True)
class TopLists:
    """``lists(key)`` -> (item ids, scores), best first; built from (key, item, score) rows."""

    keys: dict[str, int]
    items: np.ndarray  # (n_items,) object array: item vocabulary
    indptr: np.ndarray  # (n_keys + 1,) int64
    codes: np.ndarray  # (nnz,) int32 into items
    scores: np.ndarray  # (nnz,) float32

    @classmethod
    def from_table(cls, table: pa.Table, top_n: int) -> TopLists:
        """Rows ``key, item, score`` (any order) -> the ``top_n`` best items per key."""
        keys = np.asarray(table.column("key").to_numpy(zero_copy_only=False), dtype=object)
        items = np.asarray(table.column("item").to_numpy(zero_copy_only=False), dtype=object)
        scores = table.column("score").to_numpy().astype(np.float64)
        key_vocab, key_codes = np.unique(keys.astype(str), return_inverse=True)
        item_vocab, item_codes = np.unique(items.astype(str), return_inverse=True)
        # sort by key, then score descending, then item for determinism; scores are compared
        # at 1e-9 so that sums taken in another order (another engine, another thread count)
        # cannot swap two equal neighbours
        order = np.lexsort((item_codes, -np.round(scores, 9), key_codes))
        key_codes, item_codes, scores = key_codes[order], item_codes[order], scores[order]
        starts = np.searchsorted(key_codes, np.arange(len(key_vocab)))
        rank = np.arange(len(key_codes)) - starts[key_codes]
        keep = rank < top_n
        key_codes, item_codes, scores = key_codes[keep], item_codes[keep], scores[keep]
        indptr = np.zeros(len(key_vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(key_codes, minlength=len(key_vocab)), out=indptr[1:])
        return cls(
            keys={str(k): i for i, k in enumerate(key_vocab)},
            items=item_vocab.astype(object),
            indptr=indptr,
            codes=item_codes.astype(np.int32),
            scores=scores.astype(np.float32),
        )

    def lookup(self, key: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Item ids and scores of ``key`` (empty arrays for an unknown key); only the first
        ``limit`` when given (a caller that keeps 200 of 2000 need not build 2000 ids)."""
        row = self.keys.get(key)
        if row is None:
            return np.empty(0, dtype=object), np.empty(0, dtype=np.float32)
        lo, hi = int(self.indptr[row]), int(self.indptr[row + 1])
        if limit is not None:
            if limit < 0:
                raise ValueError(f"TopLists.lookup: 'limit' must be >= 0 or None; got {limit}")
            hi = min(hi, lo + limit)
        return self.items[self.codes[lo:hi]], self.scores[lo:hi]

    def __len__(self) -> int:
        return len(self.keys)

    def save(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"keys": sorted(self.keys, key=self.keys.__getitem__), "items": list(self.items)}
        (directory / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False))
        np.savez(directory / f"{name}.npz", indptr=self.indptr, codes=self.codes,
                 scores=self.scores)

    @classmethod
    def load(cls, directory: Path, name: str) -> TopLists:
        meta_path, arr_path = directory / f"{name}.json", directory / f"{name}.npz"
        for path in (meta_path, arr_path):
            if not path.exists():
                raise ArtifactError(f"{path}: missing; rebuild with 'funnel index'")
        meta = json.loads(meta_path.read_text())
        with np.load(arr_path, allow_pickle=False) as arr:
            return cls(
                keys={k: i for i, k in enumerate(meta["keys"])},
                items=np.array(meta["items"], dtype=object),
                indptr=arr["indptr"], codes=arr["codes"], scores=arr["scores"],
            )
