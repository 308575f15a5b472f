"""Named id -> vector tables on disk, the format stages exchange embeddings in.

A table ``NAME`` in a directory is two files: ``NAME_vectors.npy`` (float32, n x d) and
``NAME_ids.json`` (list of n strings, same order). The embeddings stage writes ``item``,
``query`` and ``type`` tables; recall, ranking, suggestion and serving read them through
:func:`load_vectors` without importing the stage that trained them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel.exceptions import ArtifactError


@dataclass(frozen=True)
class VectorTable:
    """Ids, their vectors, and an id -> row lookup."""

    ids: list[str]
    vectors: np.ndarray  # (n, d) float32

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def index(self) -> dict[str, int]:
        return {item: row for row, item in enumerate(self.ids)}

    def aligned_to(self, item_ids: Sequence[str]) -> AlignedVectors:
        """This table read by the rows of ``item_ids`` (an item table's order, e.g. the
        catalog's): a row map into this matrix, not a copy of it."""
        index = self.index()
        row_of = np.fromiter((index.get(str(i), -1) for i in item_ids), dtype=np.int64,
                             count=len(item_ids))
        return AlignedVectors(self, row_of)


@dataclass(frozen=True)
class AlignedVectors:
    """A :class:`VectorTable` read by the rows of an item table (the catalog's): row ``r``
    of the item table is ``table.vectors[row_of[r]]``, and a zero vector where the table has
    no vector for that item (``row_of`` -1). Holds one int64 per item; the matrix is the
    table's, shared."""

    table: VectorTable
    row_of: np.ndarray  # (n_items,) int64: item row -> row of table.vectors, -1 if none

    def __len__(self) -> int:
        return len(self.row_of)

    @property
    def dim(self) -> int:
        return self.table.dim

    def known(self, rows: np.ndarray) -> np.ndarray:
        """Whether each item row (-1: not an item) has a vector."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self.row_of):
            return np.zeros(len(rows), dtype=bool)
        return (rows >= 0) & (self.row_of[rows] >= 0)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), dim)`` float32: the vectors of item ``rows``, zero where an item has
        none (or the row is -1)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self.table.vectors) or not len(self.row_of):
            return np.zeros((len(rows), self.dim), dtype=np.float32)
        at = self.row_of[rows]
        missing = (at < 0) | (rows < 0)
        out = self.table.vectors[np.where(missing, 0, at)]
        if missing.any():
            out[missing] = 0.0
        return out

    def restricted(self, keep: np.ndarray) -> AlignedVectors:
        """The same rows, without vectors where ``keep`` (a bool per item row) is False."""
        if bool(np.all(keep)):
            return self
        return AlignedVectors(self.table, np.where(keep, self.row_of, -1))


def save_vectors(directory: Path, name: str, ids: list[str], vectors: np.ndarray) -> None:
    """Write table ``name`` atomically (temp files, then rename)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(
            f"vectors must be 2-D with one row per id; got shape {vectors.shape} for {len(ids)} ids"
        )
    directory.mkdir(parents=True, exist_ok=True)
    vec_path = directory / f"{name}_vectors.npy"
    ids_path = directory / f"{name}_ids.json"
    tmp_vec = vec_path.with_suffix(".npy.tmp")
    tmp_ids = ids_path.with_suffix(".json.tmp")
    with open(tmp_vec, "wb") as fh:
        np.save(fh, vectors, allow_pickle=False)
    tmp_ids.write_text(json.dumps(list(ids), ensure_ascii=False))
    os.replace(tmp_vec, vec_path)
    os.replace(tmp_ids, ids_path)


def load_vectors(directory: Path, name: str) -> VectorTable:
    """Read table ``name``; raises ``ArtifactError`` naming the missing or inconsistent file."""
    vec_path = directory / f"{name}_vectors.npy"
    ids_path = directory / f"{name}_ids.json"
    for path in (vec_path, ids_path):
        if not path.exists():
            raise ArtifactError(f"{path}: missing; rebuild with 'funnel embed'")
    vectors = np.load(vec_path, allow_pickle=False)
    ids = json.loads(ids_path.read_text())
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ArtifactError(
            f"{vec_path}: shape {vectors.shape} does not match {len(ids)} ids in {ids_path.name}"
        )
    return VectorTable(ids=[str(i) for i in ids], vectors=vectors.astype(np.float32, copy=False))
