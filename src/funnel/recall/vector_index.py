"""Nearest-neighbour search over item vectors with external string ids and attribute filters.

Two indexes share one interface (STYLE P5): :class:`ExactIndex` scores every live vector with
numpy and is the test oracle; :class:`VectorIndex` wraps faiss (Flat / HNSW / IVF-PQ, chosen by
size) and must agree with the oracle at a stated recall. Both keep the bookkeeping in
:class:`_Catalog`: string ids, per-row attributes (market, brand, ...), and tombstones for removed
rows, so filters and removals never require a scan over the vectors.

Filtering without a brute-force scan: the ``partition_by`` attribute (``market`` by default)
gets one sub-index per value, so a market-filtered query searches a smaller graph and is as fast
as an unfiltered one; any other attribute filter is a faiss ``IDSelectorBitmap`` passed into the
graph search, cached per filter combination.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import faiss
import numpy as np

from funnel._checks import check_is_fitted, positive_int, validate_params
from funnel.exceptions import ArtifactError

METRICS = ("cosine", "ip")
KINDS = ("auto", "flat", "hnsw", "ivfpq")
FORMAT = "funnel.vector_index/1"


class SearchResult(NamedTuple):
    """Ids and scores, best first. 2-D ``(n_queries, k)`` for a batch, 1-D for one query.

    Missing slots (fewer than ``k`` live items pass the filter) hold id ``None`` and score -inf.
    """

    ids: np.ndarray
    scores: np.ndarray


def _as_queries(queries: Any, dim: int) -> tuple[np.ndarray, bool]:
    q = np.asarray(queries, dtype=np.float32)
    single = q.ndim == 1
    if single:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(
            f"queries must have shape (d,) or (n, d) with d={dim}; got shape {np.shape(queries)}"
        )
    # one float sum is cheaper than an elementwise mask and is NaN/inf iff any element is
    # (or on overflow, where the exact check below decides)
    if not math.isfinite(float(q.sum())) and not np.isfinite(q).all():
        raise ValueError("queries must be finite; got NaN or inf values")
    return np.ascontiguousarray(q), single


def _normalize(x: np.ndarray) -> np.ndarray:
    if len(x) == 1:  # the serving case: a scalar norm is several times cheaper than einsum
        return x * np.float32(1.0 / max(math.sqrt(float(np.dot(x[0], x[0]))), 1e-12))
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]  # (n, 1)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _atomic_dir_write(target: Path, write: Any) -> None:
    """Write a directory through a temp sibling and a rename, so readers never see half of it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


class _Catalog:
    """Ids, attributes and tombstones shared by the exact and approximate indexes."""

    _param_table: ClassVar[dict[str, Any]] = {
        "metric": (lambda v: v in METRICS, f"one of {METRICS}"),
    }

    metric: str

    # ---- validation -------------------------------------------------------------------------
    def _check_vectors(self, ids: Sequence[str], vectors: Any, *, dim: int | None) -> np.ndarray:
        if isinstance(ids, str) or not all(isinstance(i, str) for i in ids):
            raise TypeError("ids must be a sequence of str")
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != len(ids):
            raise ValueError(
                f"vectors must have shape (len(ids), d) = ({len(ids)}, d); got {np.shape(vectors)}"
            )
        if dim is not None and x.shape[1] != dim:
            raise ValueError(f"vectors must have d={dim} columns; got {x.shape[1]}")
        if not np.isfinite(x).all():
            raise ValueError("vectors must be finite; got NaN or inf values")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique within one call; got duplicates")
        x = np.ascontiguousarray(x)
        return _normalize(x) if self.metric == "cosine" else x

    def _check_attributes(
        self, attributes: Mapping[str, Sequence[str]] | None, n: int, *, known: Sequence[str]
    ) -> dict[str, list[str]]:
        attributes = dict(attributes or {})
        if known and set(attributes) != set(known):
            raise ValueError(
                f"attributes must name exactly {sorted(known)} (as at fit); "
                f"got {sorted(attributes)}"
            )
        for name, values in attributes.items():
            if len(values) != n:
                raise ValueError(
                    f"attributes[{name!r}] must have one value per id ({n}); got {len(values)}"
                )
        return {k: [str(v) for v in vals] for k, vals in attributes.items()}

    # ---- bookkeeping ------------------------------------------------------------------------
    def _init_catalog(self, ids: Sequence[str], attributes: dict[str, list[str]]) -> None:
        self.ids_ = np.array(list(ids), dtype=object)
        self.row_of_ = {item: row for row, item in enumerate(ids)}
        self.deleted_ = np.zeros(len(ids), dtype=bool)
        self.attr_vocab_: dict[str, list[str]] = {}
        self.attr_codes_: dict[str, np.ndarray] = {}
        for name, values in attributes.items():
            vocab = sorted(set(values))
            lookup = {v: i for i, v in enumerate(vocab)}
            self.attr_vocab_[name] = vocab
            self.attr_codes_[name] = np.array([lookup[v] for v in values], dtype=np.int32)
        self._selector_cache: dict[Any, Any] = {}
        self._ef_set: dict[int, int] = {}

    def _append_catalog(self, ids: Sequence[str], attributes: dict[str, list[str]]) -> np.ndarray:
        """Register new rows (re-added ids tombstone their old row); returns the new rows."""
        start = len(self.ids_)
        for item in ids:
            old = self.row_of_.get(item)
            if old is not None:
                self.deleted_[old] = True
        rows = np.arange(start, start + len(ids), dtype=np.int64)
        self.ids_ = np.concatenate([self.ids_, np.array(list(ids), dtype=object)])
        self.row_of_.update({item: int(r) for item, r in zip(ids, rows, strict=True)})
        self.deleted_ = np.concatenate([self.deleted_, np.zeros(len(ids), dtype=bool)])
        for name, values in attributes.items():
            vocab = self.attr_vocab_[name]
            lookup = {v: i for i, v in enumerate(vocab)}
            for v in values:
                if v not in lookup:
                    lookup[v] = len(vocab)
                    vocab.append(v)
            codes = np.array([lookup[v] for v in values], dtype=np.int32)
            self.attr_codes_[name] = np.concatenate([self.attr_codes_[name], codes])
        self._selector_cache = {}
        return rows

    def remove(self, ids: Sequence[str]) -> int:
        """Tombstone ``ids`` (unknown ids are ignored); returns how many were removed."""
        check_is_fitted(self, "ids_")
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of str, not a single str")
        n = 0
        for item in ids:
            row = self.row_of_.pop(item, None)
            if row is not None:
                self.deleted_[row] = True
                n += 1
        self._selector_cache = {}
        return n

    def __len__(self) -> int:
        return len(self.__dict__.get("row_of_", ()))

    def __contains__(self, item: object) -> bool:
        return hasattr(self, "row_of_") and item in self.row_of_

    def _filter_mask(self, filters: Mapping[str, str] | None) -> np.ndarray | None:
        """Rows that are live and pass ``filters``, or None when every row is allowed."""
        filters = filters or {}
        for name in filters:
            if name not in self.attr_codes_:
                raise ValueError(
                    f"unknown filter attribute {name!r}; known attributes: "
                    f"{sorted(self.attr_codes_) or 'none (fit without attributes)'}"
                )
        if not filters and not self.deleted_.any():
            return None
        mask = ~self.deleted_
        for name, value in filters.items():
            vocab = self.attr_vocab_[name]
            if value not in vocab:
                return np.zeros_like(mask)
            mask = mask & (self.attr_codes_[name] == vocab.index(value))
        return mask

    def _rows_to_result(
        self, rows: np.ndarray, scores: np.ndarray, single: bool
    ) -> SearchResult:
        if single and rows.shape[1] and rows[0, -1] >= 0:  # fast path: one query, all found
            return SearchResult(self.ids_[rows[0]], scores[0].astype(np.float32, copy=False))
        valid = rows >= 0
        ids = np.full(rows.shape, None, dtype=object)
        ids[valid] = self.ids_[rows[valid]]
        scores = np.where(valid, scores, -np.inf).astype(np.float32, copy=False)
        if single:
            keep = valid[0]
            return SearchResult(ids[0][keep], scores[0][keep])
        return SearchResult(ids, scores)

    def _check_k(self, k: int) -> int:
        if type(k) is not int or k <= 0:
            raise ValueError(f"The 'k' parameter must be a positive int. Got {k!r} instead.")
        return min(k, max(len(self), 1))

    # ---- persistence helpers ----------------------------------------------------------------
    def _catalog_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"ids": list(self.ids_), "attr_vocab": self.attr_vocab_}
        arrays = {"deleted": self.deleted_}
        arrays.update({f"codes__{k}": v for k, v in self.attr_codes_.items()})
        return meta, arrays

    def _restore_catalog(self, meta: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.ids_ = np.array(meta["ids"], dtype=object)
        self.deleted_ = np.asarray(arrays["deleted"], dtype=bool)
        self.row_of_ = {
            item: row for row, item in enumerate(meta["ids"]) if not self.deleted_[row]
        }
        self.attr_vocab_ = {k: list(v) for k, v in meta["attr_vocab"].items()}
        self.attr_codes_ = {k: np.asarray(arrays[f"codes__{k}"]) for k in self.attr_vocab_}
        self._selector_cache = {}
        self._ef_set = {}


def _read_meta(path: Path, kind: str) -> dict[str, Any]:
    cfg_path = Path(path) / "config.json"
    if not cfg_path.exists():
        raise ArtifactError(f"{cfg_path}: missing; not a saved {kind}")
    meta = json.loads(cfg_path.read_text())
    if meta.get("format") != FORMAT or meta.get("class") != kind:
        raise ArtifactError(
            f"{cfg_path}: expected format {FORMAT!r} class {kind!r}; "
            f"got {meta.get('format')!r} class {meta.get('class')!r}"
        )
    return meta


class ExactIndex(_Catalog):
    """Brute-force inner-product / cosine search in numpy: exact, and the oracle for ANN tests.

    Parameters
    ----------
    metric : {"cosine", "ip"}
        ``cosine`` L2-normalises vectors and queries; ``ip`` uses raw inner products.

    Example
    -------
    >>> idx = ExactIndex().fit(["a", "b"], [[1.0, 0.0], [0.0, 1.0]])
    >>> idx.search([1.0, 0.1], k=1).ids.tolist()
    ['a']
    """

    def __init__(self, *, metric: str = "cosine") -> None:
        self.metric = metric

    def fit(
        self,
        ids: Sequence[str],
        vectors: Any,
        attributes: Mapping[str, Sequence[str]] | None = None,
    ) -> ExactIndex:
        validate_params({"metric": self.metric}, self._param_table)
        x = self._check_vectors(ids, vectors, dim=None)
        self._init_catalog(ids, self._check_attributes(attributes, len(ids), known=()))
        self.vectors_ = x
        return self

    def add(
        self,
        ids: Sequence[str],
        vectors: Any,
        attributes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Append items; an id that already exists is replaced."""
        check_is_fitted(self, "vectors_")
        x = self._check_vectors(ids, vectors, dim=self.vectors_.shape[1])
        attrs = self._check_attributes(attributes, len(ids), known=list(self.attr_vocab_))
        self._append_catalog(ids, attrs)
        self.vectors_ = np.concatenate([self.vectors_, x])

    def search(
        self, queries: Any, k: int = 10, *, filters: Mapping[str, str] | None = None
    ) -> SearchResult:
        """The ``k`` best live items for each query that pass ``filters`` (attribute == value)."""
        check_is_fitted(self, "vectors_")
        q, single = _as_queries(queries, self.vectors_.shape[1])
        k = self._check_k(k)
        if self.metric == "cosine":
            q = _normalize(q)
        scores = q @ self.vectors_.T  # (nq, n)
        mask = self._filter_mask(filters)
        if mask is not None:
            scores[:, ~mask] = -np.inf
        k_eff = min(k, scores.shape[1])
        top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        rows = np.take_along_axis(top, order, axis=1).astype(np.int64)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        rows[~np.isfinite(top_scores)] = -1
        return self._rows_to_result(rows, top_scores, single)

    def save(self, path: Path | str) -> None:
        check_is_fitted(self, "vectors_")
        meta, arrays = self._catalog_state()

        def write(tmp: Path) -> None:
            cfg = {"format": FORMAT, "class": "ExactIndex", "params": {"metric": self.metric}}
            (tmp / "config.json").write_text(json.dumps(cfg))
            (tmp / "catalog.json").write_text(json.dumps(meta, ensure_ascii=False))
            np.savez(tmp / "state.npz", allow_pickle=False, vectors=self.vectors_, **arrays)

        _atomic_dir_write(Path(path), write)

    @classmethod
    def load(cls, path: Path | str) -> ExactIndex:
        meta = _read_meta(Path(path), "ExactIndex")
        obj = cls(**meta["params"])
        with np.load(Path(path) / "state.npz", allow_pickle=False) as state:
            arrays = {k: state[k] for k in state.files}
        obj._restore_catalog(json.loads((Path(path) / "catalog.json").read_text()), arrays)
        obj.vectors_ = arrays["vectors"]
        return obj


class VectorIndex(_Catalog):
    """Approximate nearest neighbours on faiss with string ids, filters and incremental updates.

    Parameters
    ----------
    kind : {"auto", "flat", "hnsw", "ivfpq"}
        ``auto`` picks exact Flat below ``flat_max`` items, IVF-PQ above ``ivfpq_min``, HNSW
        in between (the default for real catalogs).
    metric : {"cosine", "ip"}
    partition_by : str or None
        Attribute with one sub-index per value (``market``): filtered queries on it search a
        smaller graph instead of skipping most of a big one.
    hnsw_m, ef_construction, ef_search : int
        HNSW graph degree and beam widths. ``ef_search`` is raised to ``k`` when needed, and
        divided by the selectivity of a bitmap filter (up to ``max_ef_search``).
    nlist, pq_m, nprobe : int or None
        IVF-PQ lists, PQ sub-quantizers (must divide d), lists probed; None picks from size.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> vecs = rng.normal(size=(100, 8)).astype("float32")
    >>> ids = [f"i{n}" for n in range(100)]
    >>> idx = VectorIndex(kind="hnsw").fit(ids, vecs, {"market": ["a", "b"] * 50})
    >>> idx.search(vecs[0], k=3, filters={"market": "a"}).ids[0]
    'i0'
    """

    def __init__(
        self,
        *,
        kind: str = "auto",
        metric: str = "cosine",
        partition_by: str | None = "market",
        flat_max: int = 10_000,
        ivfpq_min: int = 3_000_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 64,
        max_ef_search: int = 2048,
        nlist: int | None = None,
        pq_m: int | None = None,
        nprobe: int = 32,
        seed: int = 0,
    ) -> None:
        self.kind = kind
        self.metric = metric
        self.partition_by = partition_by
        self.flat_max = flat_max
        self.ivfpq_min = ivfpq_min
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.max_ef_search = max_ef_search
        self.nlist = nlist
        self.pq_m = pq_m
        self.nprobe = nprobe
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "metric": self.metric, "partition_by": self.partition_by,
            "flat_max": self.flat_max, "ivfpq_min": self.ivfpq_min, "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction, "ef_search": self.ef_search,
            "max_ef_search": self.max_ef_search, "nlist": self.nlist, "pq_m": self.pq_m,
            "nprobe": self.nprobe, "seed": self.seed,
        }

    def _validate(self) -> None:
        table = dict(self._param_table)
        table.update({
            "kind": (lambda v: v in KINDS, f"one of {KINDS}"),
            "partition_by": (lambda v: v is None or isinstance(v, str), "a str or None"),
            "flat_max": (positive_int, "a positive int"),
            "ivfpq_min": (positive_int, "a positive int"),
            "hnsw_m": (lambda v: positive_int(v) and v >= 4, "an int >= 4"),
            "ef_construction": (positive_int, "a positive int"),
            "ef_search": (positive_int, "a positive int"),
            "max_ef_search": (positive_int, "a positive int"),
            "nlist": (lambda v: v is None or positive_int(v), "a positive int or None"),
            "pq_m": (lambda v: v is None or positive_int(v), "a positive int or None"),
            "nprobe": (positive_int, "a positive int"),
        })
        validate_params(self.get_params(), table)

    # ---- building ---------------------------------------------------------------------------
    def _resolve_kind(self, n: int) -> str:
        if self.kind != "auto":
            return self.kind
        if n < self.flat_max:
            return "flat"
        return "ivfpq" if n >= self.ivfpq_min else "hnsw"

    def _new_faiss(self, x: np.ndarray, kind: str) -> faiss.Index:
        d = x.shape[1]
        ip = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            return faiss.IndexFlatIP(d)
        if kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(d, self.hnsw_m, ip)
            hnsw.hnsw.efConstruction = self.ef_construction
            return hnsw
        pq_m = self.pq_m or next(m for m in (d // 2, d // 4, d // 8, 1) if m and d % m == 0)
        if d % pq_m:
            raise ValueError(f"The 'pq_m' parameter must divide d={d}. Got {pq_m} instead.")
        nlist = self.nlist or int(min(max(4 * math.sqrt(len(x)), 16), len(x) // 39 or 1))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, 8, ip)
        rng = np.random.default_rng(self.seed)
        sample = x[rng.choice(len(x), size=min(len(x), max(256 * 39, nlist * 39)), replace=False)]
        index.train(sample)
        return index

    def fit(
        self,
        ids: Sequence[str],
        vectors: Any,
        attributes: Mapping[str, Sequence[str]] | None = None,
    ) -> VectorIndex:
        """Index ``vectors`` under ``ids``; ``attributes`` maps name -> one value per id."""
        self._validate()
        x = self._check_vectors(ids, vectors, dim=None)
        if len(ids) == 0:
            raise ValueError("fit needs at least one vector; got 0 ids")
        attrs = self._check_attributes(attributes, len(ids), known=())
        self._init_catalog(ids, attrs)
        self.dim_ = int(x.shape[1])
        self.kind_ = self._resolve_kind(len(ids))
        if self.kind_ == "ivfpq" and len(ids) < 1000:
            raise ValueError(f"kind='ivfpq' needs at least 1000 vectors to train; got {len(ids)}")
        self.index_ = self._new_faiss(x, self.kind_)
        self.index_.add(x)
        self.partitions_: dict[str, faiss.Index] = {}
        self.part_rows_: dict[str, np.ndarray] = {}
        if self.partition_by is not None and self.partition_by in attrs:
            codes = self.attr_codes_[self.partition_by]
            for code, value in enumerate(self.attr_vocab_[self.partition_by]):
                rows = np.flatnonzero(codes == code).astype(np.int64)
                self._add_to_partition(value, rows, x[rows], fresh=True)
        return self

    def _add_to_partition(
        self, value: str, rows: np.ndarray, x: np.ndarray, *, fresh: bool
    ) -> None:
        if fresh or value not in self.partitions_:
            kind = self.kind_ if self.kind_ != "ivfpq" or len(rows) >= 1000 else "hnsw"
            if self.kind == "auto":
                kind = self._resolve_kind(len(rows))
                if kind == "ivfpq" and len(rows) < 1000:
                    kind = "hnsw"
            self.partitions_[value] = self._new_faiss(x, kind)
            self.part_rows_[value] = np.empty(0, dtype=np.int64)
        self.partitions_[value].add(x)
        self.part_rows_[value] = np.concatenate([self.part_rows_[value], rows])

    def add(
        self,
        ids: Sequence[str],
        vectors: Any,
        attributes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Add items without a rebuild; an id that already exists is replaced."""
        check_is_fitted(self, "index_")
        x = self._check_vectors(ids, vectors, dim=self.dim_)
        attrs = self._check_attributes(attributes, len(ids), known=list(self.attr_vocab_))
        rows = self._append_catalog(ids, attrs)
        self.index_.add(x)
        if self.partition_by is not None and (self.partitions_ or self.partition_by in attrs):
            values = attrs[self.partition_by]
            for value in sorted(set(values)):
                sel = np.array([v == value for v in values])
                self._add_to_partition(value, rows[sel], x[sel], fresh=False)

    # ---- searching --------------------------------------------------------------------------
    def _params(self, index: faiss.Index, k: int, selector: Any, selectivity: float) -> Any:
        if isinstance(index, faiss.IndexHNSW):
            ef = max(self.ef_search, k)
            if selector is not None and selectivity < 1.0:
                ef = int(min(max(ef, ef / max(selectivity, 1e-6)), self.max_ef_search))
            # faiss's bundled stubs lack SearchParametersHNSW and the keyword constructors
            # its class_wrappers add to every SearchParameters class
            return faiss.SearchParametersHNSW(  # type: ignore[attr-defined]  # not in the stubs
                efSearch=ef, sel=selector)
        if isinstance(index, faiss.IndexIVF):
            probe = self.nprobe
            if selector is not None and selectivity < 1.0:
                probe = int(min(probe / max(selectivity, 1e-6), index.nlist))
            return faiss.SearchParametersIVF(  # type: ignore[call-arg]  # stubs lack the kwargs
                nprobe=probe, sel=selector)
        if selector is None:
            return None
        return faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]  # stubs lack kwargs

    def search(
        self, queries: Any, k: int = 10, *, filters: Mapping[str, str] | None = None
    ) -> SearchResult:
        """The ``k`` best live items per query passing ``filters`` (attribute == value).

        One query ``(d,)`` gives 1-D ids/scores; a batch ``(n, d)`` gives ``(n, k)`` arrays.
        """
        if "index_" not in self.__dict__:
            check_is_fitted(self, "index_")
        q, single = _as_queries(queries, self.dim_)
        k = self._check_k(k)
        if self.metric == "cosine":
            q = _normalize(q)
        plan = self._plan(filters, k)
        if plan is None:  # a partition value that no item has
            empty = np.full((len(q), k), -1, dtype=np.int64)
            return self._rows_to_result(empty, np.zeros((len(q), k), np.float32), single)
        index, local_rows, params, hnsw_ef = plan[:4]
        if hnsw_ef is not None and self._ef_set.get(id(index)) != hnsw_ef:
            index.hnsw.efSearch = hnsw_ef  # remembered in Python: a SWIG read costs ~1 us
            self._ef_set[id(index)] = hnsw_ef
        scores, labels = index.search(q, k, params=params)
        if local_rows is not None:
            labels = np.where(labels >= 0, local_rows[np.maximum(labels, 0)], -1)
        return self._rows_to_result(labels, scores, single)

    def _plan(self, filters: Mapping[str, str] | None, k: int) -> tuple[Any, ...] | None:
        """Which faiss index to search with which parameters, cached per filter set and k.

        Building SWIG parameter objects costs tens of microseconds, as much as a small HNSW
        search, so the plan is reused until the next add/remove clears the cache.
        """
        fkey = tuple(sorted(filters.items())) if filters else ()
        key = ("plan", fkey, k, self.ef_search, self.nprobe)
        if key in self._selector_cache:
            plan: tuple[Any, ...] | None = self._selector_cache[key]
            return plan
        rest = dict(fkey)
        part_value = (rest.pop(self.partition_by, None)
                      if self.partitions_ and self.partition_by is not None else None)
        if part_value is not None and part_value not in self.partitions_:
            assert self.partition_by is not None  # part_value is its value
            self._filter_mask({self.partition_by: part_value})  # validates the name
            self._selector_cache[key] = None
            return None
        mask = self._filter_mask(rest)
        if part_value is not None:
            index, local_rows = self.partitions_[part_value], self.part_rows_[part_value]
            if mask is not None:
                mask = mask[local_rows]
        else:
            index, local_rows = self.index_, None
        selector, bits, selectivity = None, None, 1.0
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            selectivity = float(mask.mean()) if len(mask) else 0.0
        params = self._params(index, k, selector, selectivity)
        hnsw_ef = None
        if selector is None and isinstance(index, faiss.IndexHNSW) and k <= self.ef_search:
            # the common case: no per-call parameter object at all (faiss' parameter path
            # costs ~10% of a search); the index's own efSearch is set instead. It only ever
            # holds self.ef_search, so concurrent searches agree on it.
            params, hnsw_ef = None, self.ef_search
        plan = (index, local_rows, params, hnsw_ef, selector, bits)  # keep selector alive
        self._selector_cache[key] = plan
        return plan

    # ---- persistence ------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write config, ids, attributes and native faiss files atomically (no pickle)."""
        check_is_fitted(self, "index_")
        meta, arrays = self._catalog_state()
        parts = sorted(self.partitions_)
        arrays.update({f"part_rows__{i}": self.part_rows_[v] for i, v in enumerate(parts)})

        def write(tmp: Path) -> None:
            cfg = {
                "format": FORMAT, "class": "VectorIndex", "params": self.get_params(),
                "kind_": self.kind_, "dim_": self.dim_, "partitions": parts,
            }
            (tmp / "config.json").write_text(json.dumps(cfg, ensure_ascii=False))
            (tmp / "catalog.json").write_text(json.dumps(meta, ensure_ascii=False))
            np.savez(tmp / "state.npz", allow_pickle=False, **arrays)
            faiss.write_index(self.index_, str(tmp / "global.faiss"))
            for i, value in enumerate(parts):
                faiss.write_index(self.partitions_[value], str(tmp / f"part-{i:04d}.faiss"))

        _atomic_dir_write(Path(path), write)

    @classmethod
    def load(cls, path: Path | str) -> VectorIndex:
        path = Path(path)
        meta = _read_meta(path, "VectorIndex")
        obj = cls(**meta["params"])
        with np.load(path / "state.npz", allow_pickle=False) as state:
            arrays = {k: state[k] for k in state.files}
        obj._restore_catalog(json.loads((path / "catalog.json").read_text()), arrays)
        obj.kind_ = meta["kind_"]
        obj.dim_ = int(meta["dim_"])
        obj.index_ = faiss.read_index(str(path / "global.faiss"))
        obj.partitions_ = {}
        obj.part_rows_ = {}
        for i, value in enumerate(meta["partitions"]):
            obj.partitions_[value] = faiss.read_index(str(path / f"part-{i:04d}.faiss"))
            obj.part_rows_[value] = arrays[f"part_rows__{i}"].astype(np.int64)
        return obj
