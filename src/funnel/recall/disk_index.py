"""Nearest neighbours past RAM: IVF-PQ fast-scan codes in memory, full vectors on disk.

:class:`VectorIndex` keeps every vector (and a Python string per id) in RAM, which stops fitting
somewhere past a few million items. :class:`DiskIVFPQIndex` keeps only what the shortlist needs
in RAM: faiss ``IndexIVFPQFastScan`` codes (``pq_m`` 4-bit sub-quantizers, d/4 bytes at
``pq_m = d/2``) plus faiss's 8-byte row id per code. The full float vectors stay in a ``.npy``
file opened as a read-only memory map; a query reads only its ``shortlist`` candidates from it
and ranks them by exact inner product, which buys back the recall PQ loses.

Ids are rows: item ``i`` is row ``i`` of the vector file. Map rows to string ids with an array
kept beside it (the catalog's item table), not with a Python dict: 10M str objects cost more
RAM than the whole index. The metric is inner product; L2-normalise vectors and queries for
cosine. faiss is the engine throughout; nothing here is a hand-written ANN.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np
import numpy.typing as npt

from funnel._checks import check_is_fitted, positive_int, validate_params
from funnel.exceptions import ArtifactError, DataFileError
from funnel.recall.vector_index import _as_queries, _atomic_dir_write

FORMAT = "funnel.disk_index/1"
_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
_CHUNK = 262_144  # rows per add / check pass: ~64 MB of float32 at d = 64

VectorSource = npt.NDArray[np.floating] | str | os.PathLike[str]


class Neighbours(NamedTuple):
    """Rows and exact inner-product scores, best first: 1-D for one query, 2-D for a batch.

    With fewer than ``k`` candidates, a batch pads with row -1 and score -inf; one query
    returns only the rows found.
    """

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]


def _open_vectors(source: VectorSource) -> tuple[np.ndarray, Path | None]:
    """The vectors as an array (a read-only memory map for a path) and the file they came from."""
    if isinstance(source, np.ndarray):
        return source, None
    path = Path(source)
    if not path.is_file():
        raise DataFileError(str(path), "missing; pass an existing .npy file of (n, d) vectors")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataFileError(str(path), f"not a .npy array ({exc}); write it with np.save") from exc
    return x, path


def _check_matrix(x: np.ndarray, name: str) -> None:
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (n, d) matrix; got shape {x.shape}")
    if x.dtype not in _DTYPES:
        raise ValueError(f"{name} must be float32 or float16; got {x.dtype}: convert with astype")


def _default_nlist(n: int) -> int:
    """A power of two near sqrt(n): 4,096 lists at 10M. More lists scan less per probe but cost
    O(n * nlist) to assign at build time, which on 2 cores is the bulk of the build."""
    return int(2 ** round(math.log2(max(math.sqrt(n), 16.0))))


class DiskIVFPQIndex:
    """IVF-PQ fast-scan shortlist in RAM, exact re-ranking from memory-mapped vectors.

    Parameters
    ----------
    nlist : int or None
        Inverted lists (coarse centroids); None picks a power of two near sqrt(n).
    pq_m : int or None
        4-bit PQ sub-quantizers, even and dividing d; None uses d / 2 (d / 4 bytes per code).
    nprobe : int
        Lists scanned per query; settable between searches.
    shortlist : int
        PQ candidates re-ranked exactly per query (at least ``k`` are); settable.
    train_size : int or None
        Rows sampled to train the quantizers; None uses 40 per list (at least 65,536).
    seed : int
        Seed of the training sample.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> vecs = rng.normal(size=(5000, 16)).astype("float32")
    >>> vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)  # inner product -> cosine
    >>> idx = DiskIVFPQIndex(nlist=16, nprobe=16, shortlist=50).fit(vecs)
    >>> int(idx.search(vecs[7], k=1).ids[0])
    7
    """

    def __init__(
        self,
        *,
        nlist: int | None = None,
        pq_m: int | None = None,
        nprobe: int = 32,
        shortlist: int = 100,
        train_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.nlist = nlist
        self.pq_m = pq_m
        self.nprobe = nprobe
        self.shortlist = shortlist
        self.train_size = train_size
        self.seed = seed

    def get_params(self) -> dict[str, int | None]:
        return {
            "nlist": self.nlist, "pq_m": self.pq_m, "nprobe": self.nprobe,
            "shortlist": self.shortlist, "train_size": self.train_size, "seed": self.seed,
        }

    def _validate(self) -> None:
        opt = (lambda v: v is None or positive_int(v), "a positive int or None")
        validate_params(self.get_params(), {
            "nlist": opt, "pq_m": opt, "train_size": opt,
            "nprobe": (positive_int, "a positive int"),
            "shortlist": (positive_int, "a positive int"),
            "seed": (lambda v: isinstance(v, int) and v >= 0, "a non-negative int"),
        })

    # ---- building ---------------------------------------------------------------------------
    def fit(self, vectors: VectorSource) -> DiskIVFPQIndex:
        """Train and fill the index from an (n, d) float32/float16 array or ``.npy`` file path.

        A path is read chunk by chunk through a memory map, so n x d never has to fit in RAM;
        it also becomes the re-ranking store (``save`` links or copies it into the artifact).
        """
        self._validate()
        x, source = _open_vectors(vectors)
        _check_matrix(x, "vectors" if source is None else str(source))
        n, d = (int(s) for s in x.shape)
        pq_m = self.pq_m or d // 2
        if pq_m % 2 or d % pq_m:
            raise ValueError(
                f"The 'pq_m' parameter must be even and divide d={d}. Got {pq_m} instead."
            )
        nlist = self.nlist or _default_nlist(n)
        if n < 39 * nlist:
            raise ValueError(
                f"fit needs at least 39 * nlist = {39 * nlist} vectors to train; got {n}: "
                f"lower nlist"
            )
        train_n = min(n, self.train_size or max(40 * nlist, 65_536))
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(n, size=train_n, replace=False))
        train = np.ascontiguousarray(x[sample], dtype=np.float32)
        if not np.isfinite(train).all():
            raise ValueError("vectors must be finite; got NaN or inf values")
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQFastScan(quantizer, d, nlist, pq_m, 4, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = self.seed
        index.train(train)
        del train
        for lo in range(0, n, _CHUNK):
            chunk = np.ascontiguousarray(x[lo : lo + _CHUNK], dtype=np.float32)
            if not np.isfinite(chunk).all():
                raise ValueError(f"vectors must be finite; got NaN or inf in rows {lo}..")
            index.add(chunk)
        self.index_ = index
        self.vectors_ = x
        self.source_ = source
        self.dim_, self.n_items_, self.nlist_, self.pq_m_ = d, n, nlist, pq_m
        self._search_set: tuple[int, int] = (-1, -1)
        return self

    def __len__(self) -> int:
        return int(self.__dict__.get("n_items_", 0))

    # ---- searching --------------------------------------------------------------------------
    def search(self, queries: npt.ArrayLike, k: int = 10) -> Neighbours:
        """The ``k`` best rows by exact inner product among each query's PQ shortlist."""
        if "index_" not in self.__dict__:
            check_is_fitted(self, "index_")
        if type(k) is not int or k <= 0:
            raise ValueError(f"The 'k' parameter must be a positive int. Got {k!r} instead.")
        q, single = _as_queries(queries, self.dim_)
        if (self.nprobe, self.shortlist) != self._search_set:  # settable: check once per change
            ok = (positive_int, "a positive int")
            validate_params({"nprobe": self.nprobe, "shortlist": self.shortlist},
                            {"nprobe": ok, "shortlist": ok})
            self.index_.nprobe = self.nprobe  # a SWIG write, so only when it changed
            self._search_set = (self.nprobe, self.shortlist)
        r = min(max(self.shortlist, k), self.n_items_)
        _, cand = self.index_.search(q, r)
        if single:
            return self._rerank_one(q[0], cand[0], k)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        for i in range(len(q)):
            got = self._rerank_one(q[i], cand[i], k)
            ids[i, : len(got.ids)] = got.ids
            scores[i, : len(got.scores)] = got.scores
        return Neighbours(ids, scores)

    def _rerank_one(self, q: np.ndarray, cand: np.ndarray, k: int) -> Neighbours:
        rows = np.sort(cand[cand >= 0])  # ascending rows read the file front to back
        vecs = np.asarray(self.vectors_[rows], dtype=np.float32)
        scores = vecs @ q
        top = min(k, len(rows))
        if top < len(rows):
            part = np.argpartition(-scores, top - 1)[:top]
        else:
            part = np.arange(len(rows))
        order = part[np.argsort(-scores[part], kind="stable")]
        return Neighbours(rows[order], scores[order])

    # ---- persistence ------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write config.json, the native faiss file and vectors.npy atomically (no pickle).

        Vectors fitted from a file are hard-linked when the artifact is on the same
        filesystem (10M x 64 float32 is 2.6 GB; a copy would double the disk), else copied.
        A hard link shares bytes with the source: replace either file, never write into it.
        """
        check_is_fitted(self, "index_")

        def write(tmp: Path) -> None:
            cfg = {
                "format": FORMAT, "class": "DiskIVFPQIndex", "params": self.get_params(),
                "dim": self.dim_, "n_items": self.n_items_, "nlist": self.nlist_,
                "pq_m": self.pq_m_, "dtype": str(self.vectors_.dtype),
            }
            (tmp / "config.json").write_text(json.dumps(cfg))
            faiss.write_index(self.index_, str(tmp / "ivf.faiss"))
            target = tmp / "vectors.npy"
            if self.source_ is None:
                np.save(target, self.vectors_, allow_pickle=False)
                return
            try:
                os.link(self.source_, target)
            except OSError:
                shutil.copyfile(self.source_, target)

        _atomic_dir_write(Path(path), write)

    @classmethod
    def load(cls, path: Path | str) -> DiskIVFPQIndex:
        """Read the faiss codes into RAM and memory-map the vectors (read-only)."""
        path = Path(path)
        for name in ("config.json", "ivf.faiss", "vectors.npy"):
            if not (path / name).is_file():
                raise ArtifactError(f"{path / name}: missing; re-save the index to {path}")
        cfg = json.loads((path / "config.json").read_text())
        if cfg.get("format") != FORMAT or cfg.get("class") != "DiskIVFPQIndex":
            raise ArtifactError(
                f"{path / 'config.json'}: expected format {FORMAT!r} class 'DiskIVFPQIndex'; "
                f"got {cfg.get('format')!r} class {cfg.get('class')!r}"
            )
        obj = cls(**cfg["params"])
        vecs = np.load(path / "vectors.npy", mmap_mode="r", allow_pickle=False)
        want = (int(cfg["n_items"]), int(cfg["dim"]))
        if vecs.shape != want or str(vecs.dtype) != cfg["dtype"]:
            raise ArtifactError(
                f"{path / 'vectors.npy'}: shape {vecs.shape} {vecs.dtype} does not match "
                f"config {want} {cfg['dtype']}; re-save the index"
            )
        index = faiss.read_index(str(path / "ivf.faiss"))
        if not isinstance(index, faiss.IndexIVFPQFastScan):
            raise ArtifactError(
                f"{path / 'ivf.faiss'}: a {type(index).__name__}, not IndexIVFPQFastScan; "
                f"re-save the index"
            )
        if index.d != want[1] or index.ntotal != want[0]:
            raise ArtifactError(
                f"{path / 'ivf.faiss'}: {index.ntotal} x {index.d} does not match config "
                f"{want}; re-save the index"
            )
        obj.index_ = index
        obj.vectors_, obj.source_ = vecs, path / "vectors.npy"
        obj.dim_, obj.n_items_ = want[1], want[0]
        obj.nlist_, obj.pq_m_ = int(cfg["nlist"]), int(cfg["pq_m"])
        obj._search_set = (-1, -1)
        return obj
