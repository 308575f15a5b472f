"""Interaction splits for the DiffRec evaluation protocol, and the DiffRec split file format.

A split is three arrays of integer ``[user, item]`` pairs (train / valid / test). DiffRec
(Wang et al. 2023) publishes its splits as ``train_list.npy``, ``valid_list.npy`` and
``test_list.npy`` in one directory; :func:`load_diffrec_split` reads them as they are, and
:func:`split_per_user` makes one from raw interactions (chronological per user, 7:1:2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import scipy.sparse as sp

from funnel.exceptions import DataFileError

SPLIT_FILES = ("train_list.npy", "valid_list.npy", "test_list.npy")


@dataclass(frozen=True)
class InteractionSplit:
    """Train / valid / test ``[user, item]`` pairs over ``n_users`` x ``n_items`` ids."""

    n_users: int
    n_items: int
    train: np.ndarray  # (n, 2) int64
    valid: np.ndarray
    test: np.ndarray

    def matrix(self, part: str) -> sp.csr_matrix:
        """The binary user x item CSR matrix of one part (``train``, ``valid`` or ``test``)."""
        if part not in ("train", "valid", "test"):
            raise ValueError(
                f"The 'part' parameter must be 'train', 'valid' or 'test'. Got {part!r} instead."
            )
        pairs = getattr(self, part)
        m = sp.csr_matrix(
            (np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])),
            shape=(self.n_users, self.n_items),
        )
        m.data[:] = 1.0  # duplicates collapse to one interaction
        return m

    def stats(self) -> dict[str, int]:
        return {"users": self.n_users, "items": self.n_items, "train": len(self.train),
                "valid": len(self.valid), "test": len(self.test)}


def read_recbole_inter(path: Path) -> dict[str, np.ndarray]:
    """Read a RecBole ``.inter`` file (typed TSV header, e.g. MovieLens ml-100k).

    Returns ``user``, ``item`` (str ids), ``rating`` and ``timestamp`` (float) columns.
    """
    if not path.is_file():
        raise DataFileError(str(path), "no such file (expected a RecBole .inter TSV)")
    try:
        table = pacsv.read_csv(
            path, parse_options=pacsv.ParseOptions(delimiter="\t"),
            convert_options=pacsv.ConvertOptions(column_types={
                "user_id:token": "string", "item_id:token": "string",
                "rating:float": "float64", "timestamp:float": "float64"}),
        )
    except Exception as err:  # pyarrow raises several types; name the file either way
        raise DataFileError(str(path), f"unreadable as a RecBole TSV: {err}") from err
    need = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise DataFileError(
            str(path), f"missing column(s) {missing}; header has {table.column_names}"
        )
    return {
        "user": np.asarray(table["user_id:token"].to_pylist(), dtype=object),
        "item": np.asarray(table["item_id:token"].to_pylist(), dtype=object),
        "rating": table["rating:float"].to_numpy(),
        "timestamp": table["timestamp:float"].to_numpy(),
    }


def split_per_user(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    *,
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> tuple[InteractionSplit, list[str], list[str]]:
    """Chronological per-user split (DiffRec's protocol); also returns the user and item ids.

    Each user's interactions sorted by time go ``ratios`` to train / valid / test; users with
    fewer than 3 interactions keep all of them in train.
    """
    if len(ratios) != 3 or abs(sum(ratios) - 1.0) > 1e-9 or min(ratios) < 0:
        raise ValueError(f"The 'ratios' parameter must be 3 shares summing to 1. Got {ratios!r}.")
    if not len(users) == len(items) == len(timestamps):
        raise ValueError(
            f"users, items and timestamps must have one entry per interaction; got "
            f"{len(users)}, {len(items)}, {len(timestamps)}"
        )
    user_ids, u = np.unique(users, return_inverse=True)
    item_ids, i = np.unique(items, return_inverse=True)
    order = np.lexsort((timestamps, u))  # by user, then time
    u, i = u[order], i[order]
    parts: list[list[np.ndarray]] = [[], [], []]
    bounds = np.flatnonzero(np.diff(u)) + 1
    for user_rows in np.split(np.arange(len(u)), bounds):
        n = len(user_rows)
        n_train = n if n < 3 else max(1, int(round(n * ratios[0])))
        n_valid = 0 if n < 3 else int(round(n * ratios[1]))
        cuts = [n_train, min(n, n_train + n_valid)]
        for k, chunk in enumerate(np.split(user_rows, cuts)):
            parts[k].append(chunk)
    arrays = [
        np.stack([u[np.concatenate(p)], i[np.concatenate(p)]], axis=1).astype(np.int64)
        for p in parts
    ]
    split = InteractionSplit(len(user_ids), len(item_ids), *arrays)
    return split, [str(x) for x in user_ids], [str(x) for x in item_ids]


def load_movielens_split(path: Path, *, min_rating: float = 4.0) -> InteractionSplit:
    """ml-100k style ``.inter`` file -> chronological split of ratings >= ``min_rating``.

    Keeping only ratings >= 4 as positive feedback follows DiffRec's ML-1M preprocessing.
    """
    cols = read_recbole_inter(path)
    keep = cols["rating"] >= min_rating
    split, _, _ = split_per_user(cols["user"][keep], cols["item"][keep], cols["timestamp"][keep])
    return split


def save_diffrec_split(split: InteractionSplit, directory: Path) -> None:
    """Write ``train_list.npy`` / ``valid_list.npy`` / ``test_list.npy`` (int64 [user, item])."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, pairs in zip(SPLIT_FILES, (split.train, split.valid, split.test), strict=True):
        np.save(directory / name, np.ascontiguousarray(pairs, dtype=np.int64), allow_pickle=False)


def _read_pairs(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataFileError(str(path), f"missing; a DiffRec split directory holds {SPLIT_FILES}")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise DataFileError(str(path), f"not a plain .npy array: {err}") from err
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DataFileError(str(path), f"expected shape (n, 2) [user, item]; got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataFileError(str(path), f"expected integer ids; got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise DataFileError(str(path), f"ids must be >= 0; found {int(arr.min())}")
    return arr.astype(np.int64)


def load_diffrec_split(directory: Path) -> InteractionSplit:
    """Read a DiffRec split directory as published (ids already 0-based integers)."""
    if not directory.is_dir():
        raise DataFileError(str(directory), "no such directory (expected a DiffRec split)")
    train, valid, test = (_read_pairs(directory / name) for name in SPLIT_FILES)
    everything = np.concatenate([train, valid, test])
    if len(train) == 0:
        raise DataFileError(str(directory / SPLIT_FILES[0]), "is empty")
    n_users, n_items = (int(everything[:, k].max()) + 1 for k in (0, 1))
    return InteractionSplit(n_users, n_items, train, valid, test)
