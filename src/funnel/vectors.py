"""Named id -> vector tables on disk, the format stages exchange embeddings in.

A table ``NAME`` in a directory is two files: ``NAME_vectors.npy`` (float32, n x d) and
``NAME_ids.json`` (list of n strings, same order). The embeddings stage writes ``item``,
``query`` and ``type`` tables; recall, ranking, suggestion and serving read them through
:func:`load_vectors` without importing the stage that trained them.
"""

from __future__ import annotations

import json
import os
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
