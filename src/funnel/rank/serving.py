"""The rank stage at serving time: candidate ids + request + session state -> pCTR.

Raw columns are assembled from the item snapshot written at training time, the request (query,
fixed position) and the live :class:`RecentActions` (recent clicks and the KDD'18 similarities
through the same ``personalization_features`` the training rows used), then scored by the saved
ranker through the same ``FeatureSet.transform``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from funnel.exceptions import ArtifactError
from funnel.features.history import DEFAULT_HISTORY_LEN, HISTORY_COLUMNS, history_columns
from funnel.features.personalization import (
    ItemVectorLookup,
    RecentActions,
    clip_state,
    personalization_features,
)
from funnel.features.query_match import QUERY_MATCH_FEATURES, TermIndex, query_match_features
from funnel.rank.base import Ranker
from funnel.rank.calibration import Calibrator, calibrator_from_dict

_NUMERIC = ("price", "bid", "item_imps_before", "item_clicks_before", "item_bookings_before",
            "item_ctr_before")
_TEXT = ("title", "category", "brand", "market")
_ITEM_COLUMNS = frozenset({"item_id", *_NUMERIC, *_TEXT})
_REQUEST_COLUMNS = frozenset({"user_id", "position", "query", "recent_clicks", "n_recent_clicks",
                              *HISTORY_COLUMNS})
"""Raw columns :meth:`ServingRanker.columns` fills with one value for every candidate."""


@dataclass
class ServingRanker:
    """Scores candidates for one request; read-only after load, safe to share across requests.

    Loaded, its item arrays are by row of the rank stage's item snapshot (``rank/items.parquet``);
    a server aligns them to its catalog once (:meth:`aligned_to`), and then hands it catalog
    rows."""

    ranker: Ranker
    calibrator: Calibrator
    item_row: dict[str, int]
    item_cols: dict[str, np.ndarray]
    vectors: ItemVectorLookup | None
    recent_k: int
    position: int
    history_len: int = DEFAULT_HISTORY_LEN
    """Actions in the ``hist_*`` columns, as the training rows had them."""
    cvr: Ranker | None = None
    recall_sources: tuple[str, ...] = ()
    """Sources whose ranks the model reads (``rec_*`` columns, :mod:`rank.recall_features`):
    the caller passes them as ``recall``; without them they are 0 (found by no source)."""
    state_scope: str = "user"
    """What the training rows' state held: "user" (each user's actions across sessions, the
    impression-trained ranker) or "session" (the click-trained ranker, whose rows replay one
    session at a time): the engine hands the ranker the same."""
    item_parts: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    """Item-side fields encoded once per snapshot item (rows = snapshot rows)."""
    term_index: TermIndex | None = None
    """The snapshot's item terms, for the query-match features of a whole request at once."""
    item_codes: dict[str, np.ndarray] | None = None
    """Per text column, an integer code per snapshot row (equal codes, equal values)."""
    # set by precompute: packed item fields, load-time row maps, remembered encodings
    _item_idx: np.ndarray | None = field(default=None, init=False, repr=False)
    _item_val: np.ndarray | None = field(default=None, init=False, repr=False)
    _item_slices: dict[str, slice] = field(default_factory=dict, init=False, repr=False)
    _packed: dict[str, tuple[np.ndarray, np.ndarray]] | None = field(
        default=None, init=False, repr=False)
    _vector_rows: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False)
    _type_rows: np.ndarray | None = field(default=None, init=False, repr=False)
    _broadcast: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    # set by aligned_to: the item table's id -> row lookup (instead of item_row), and per row
    # whether the snapshot has the item (+ a trailing False, for row -1)
    _lookup: Callable[[list[str]], np.ndarray] | None = field(
        default=None, init=False, repr=False)
    _known: np.ndarray | None = field(default=None, init=False, repr=False)
    _all_known: bool = field(default=True, init=False, repr=False)

    def precompute(self) -> ServingRanker:
        """Encode every field that depends on the item alone, once (the request then encodes
        only query/session fields: the same numbers, a fraction of the work), and map every
        snapshot row to its item-vector row. The item terms are indexed on first use
        (:meth:`terms`), or shared by a caller that has them."""
        import pandas as pd

        from funnel.rank.torch_ranker import TorchRanker

        self.item_codes = {
            c: pd.factorize(pd.Series(self.item_cols[c], dtype=object))[0] for c in _TEXT
        }
        if self.vectors is not None:  # a million id lookups at load, none per request
            ids = self.item_cols["item_id"].tolist()
            self._vector_rows = self.vectors.rows(ids)
            if self.vectors.types is not None:
                self._type_rows = self.vectors.types.rows(ids)
        if not isinstance(self.ranker, TorchRanker):
            return self
        fs = self.ranker.features_
        item_only = [s.name for s in fs.specs if set(s.sources) <= _ITEM_COLUMNS]
        cols = {k: v for k, v in self.item_cols.items() if k in _ITEM_COLUMNS}
        parts = fs.encode_fields(cols, item_only)
        # one row-major matrix per array: a request gathers its candidates' item fields with
        # two takes that touch a cache line or two per row, instead of one take per field
        # touching a line per field (the parts below are views into these matrices)
        self._item_idx = np.ascontiguousarray(np.concatenate([parts[n][0] for n in parts], 1))
        self._item_val = np.ascontiguousarray(np.concatenate([parts[n][1] for n in parts], 1))
        start = 0
        for name, (idx, _) in parts.items():
            self._item_slices[name] = slice(start, start + idx.shape[1])
            start += idx.shape[1]
        del parts
        self.item_parts = self._packed = {
            name: (self._item_idx[:, sl], self._item_val[:, sl])
            for name, sl in self._item_slices.items()
        }
        return self

    def aligned_to(
        self, item_ids: Sequence[str], *, lookup: Callable[[list[str]], np.ndarray],
    ) -> ServingRanker:
        """This ranker with its item arrays re-ordered to the rows of another item table
        (``item_ids``, the serving catalog's; ``lookup``: that table's id -> row function, -1
        for ids it lacks): item columns, item codes, the fields encoded at load and the vector
        and type rows. Items of the table that the snapshot lacks are marked unknown, and a
        request with one of them takes the same path as before (row -1: item columns from the
        request, every field encoded per candidate). Scored by ``rows`` of that table from
        then on; items only the snapshot has are dropped (nothing can ask for them). The term
        index is not carried over: a caller that has the table's shares it (``term_index``),
        else it is built from the aligned columns on first use. This ranker is unchanged."""
        own = self.rows(list(item_ids))  # table row -> snapshot row (-1: not in it)
        known = own >= 0
        at = np.where(known, own, 0)
        n = len(own)

        def take(col: np.ndarray) -> np.ndarray:
            out = np.asarray(col)[at] if len(col) else np.empty(n, dtype=np.asarray(col).dtype)
            if not known.all():
                if out.dtype.kind == "f":
                    out[~known] = np.nan
                elif out.dtype.kind == "O":
                    out[~known] = None
            return out

        cols = {name: take(col) for name, col in self.item_cols.items()}  # item_id: None
        codes = None if self.item_codes is None else {
            c: take(v) for c, v in self.item_codes.items()}
        out = replace(self, item_row={}, item_cols=cols, item_codes=codes, term_index=None,
                      item_parts=None)
        out._lookup, out._known = lookup, np.append(known, False)
        out._all_known = bool(known.all())
        out._item_slices = dict(self._item_slices)
        if self._item_idx is not None and self._item_val is not None:
            out._item_idx = np.ascontiguousarray(take(self._item_idx))
            out._item_val = np.ascontiguousarray(take(self._item_val))
        if self.item_parts is not None and self.item_parts is self._packed \
                and out._item_idx is not None and out._item_val is not None:
            out.item_parts = out._packed = {
                name: (out._item_idx[:, sl], out._item_val[:, sl])
                for name, sl in out._item_slices.items()}
        elif self.item_parts is not None:  # replaced after precompute: re-order each
            out.item_parts = {name: (take(idx), take(val))
                              for name, (idx, val) in self.item_parts.items()}
        if self._vector_rows is not None:
            out._vector_rows = (take(self._vector_rows[0]), take(self._vector_rows[1]))
        if self._type_rows is not None:
            out._type_rows = take(self._type_rows)
        return out

    def covers(self, rows: np.ndarray) -> bool:
        """Whether the snapshot has every item at ``rows`` (rows of :meth:`rows`)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._known is None or self._all_known:
            return bool((rows >= 0).all())
        return bool(self._known[rows].all())  # row -1 reads the trailing False

    def _own(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` with -1 for the items the snapshot lacks (aligned: rows of the table)."""
        if self._known is None or self._all_known:
            return rows
        return np.where(self._known[rows], rows, -1)

    def columns(
        self, item_ids: list[str], *, query: str, market: str | None, state: RecentActions,
        user_id: str | None = None, rows: np.ndarray | None = None,
        query_match: Mapping[str, np.ndarray] | None = None,
        recall: Mapping[str, np.ndarray] | None = None, now_ms: int | None = None,
    ) -> dict[str, np.ndarray]:
        """The raw feature columns of the candidates, as a training row would have them
        (``rows``: their snapshot rows if the caller has them, see :meth:`rows`;
        ``query_match``: their ``qm_*`` columns if the caller computed them; ``now_ms``: the
        request's time, which hides long clicks whose dwell has not yet reached the threshold,
        as training rows do; None shows them all)."""
        n = len(item_ids)
        rows = self.rows(item_ids) if rows is None else self._own(self._check_rows(rows, n))
        cols = self._item_columns(item_ids, rows, market)
        cols.update(self._request_columns(
            item_ids, rows, query=query, state=state, user_id=user_id, item_cols=cols,
            query_match=query_match, recall=recall, now_ms=now_ms,
        ))
        return {name: cols[name] for name in _column_order(cols)}

    def _item_columns(
        self, item_ids: list[str], rows: np.ndarray, market: str | None
    ) -> dict[str, np.ndarray]:
        """item_id and the snapshot's item columns (NaN/None for items it lacks; the request's
        market for those, as the training rows had it)."""
        known = rows >= 0
        safe = np.where(known, rows, 0)
        cols: dict[str, np.ndarray] = {"item_id": np.array(item_ids, dtype=object)}
        for name in _NUMERIC:
            cols[name] = np.where(known, self.item_cols[name][safe], np.nan)
        for name in _TEXT:
            cols[name] = np.where(known, self.item_cols[name][safe], np.array(None, dtype=object))
        if market is not None:
            cols["market"] = np.where(known, cols["market"], market)
        return cols

    def _request_columns(
        self, item_ids: list[str], rows: np.ndarray, *, query: str, state: RecentActions,
        user_id: str | None, item_cols: Mapping[str, np.ndarray] | None,
        query_match: Mapping[str, np.ndarray] | None,
        recall: Mapping[str, np.ndarray] | None = None, now_ms: int | None = None,
    ) -> dict[str, np.ndarray]:
        """The columns that come from the request and the session (``item_cols`` are only read
        for candidates the snapshot lacks)."""
        n = len(item_ids)
        history = history_columns(state, now_ms, self.history_len)  # from the uncut state
        profile, state = state, clip_state(state, self.recent_k)  # as training rows were cut
        cols: dict[str, np.ndarray] = {}
        cols["user_id"] = _same(user_id, n)  # None -> out-of-vocabulary
        cols["position"] = np.full(n, self.position, dtype=np.int64)
        cols["query"] = _same(query or "", n)
        if query_match is not None:
            cols.update(_check_query_match(query_match, n))
        else:
            cols.update(self._query_match(query or "", rows, item_cols))
        recent = list(state.clicks[-self.recent_k :])
        cols["recent_clicks"] = _same(recent, n)
        cols["n_recent_clicks"] = np.full(n, len(recent), dtype=np.int64)
        for name, values in history.items():
            cols[name] = _same(values, n)
        if self.vectors is not None:
            cols.update(personalization_features(
                item_ids, state, self._request_vectors(item_ids, rows), now_ms=now_ms,
                profile=profile))
        if self.recall_sources:
            cols.update(_check_recall(recall, self.recall_sources, n))
        return cols

    def _request_vectors(self, item_ids: list[str], rows: np.ndarray) -> ItemVectorLookup:
        """The vector lookup, answering this request's candidates from the rows mapped at load
        (same rows as a lookup by id, without a hash probe into a million ids per candidate)."""
        assert self.vectors is not None
        if self._vector_rows is None or (rows < 0).any():
            return self.vectors
        vec_rows, found = self._vector_rows
        type_rows = None if self._type_rows is None else self._type_rows[rows]
        return _CandidateVectors.of(self.vectors, item_ids, vec_rows[rows], found[rows],
                                    type_rows)

    def score(
        self, item_ids: list[str], *, query: str, market: str | None, state: RecentActions,
        user_id: str | None = None, with_cvr: bool = False, rows: np.ndarray | None = None,
        query_match: Mapping[str, np.ndarray] | None = None,
        recall: Mapping[str, np.ndarray] | None = None, now_ms: int | None = None,
    ) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        """(calibrated pCTR, raw feature columns); ``with_cvr`` adds ``p_cvr`` (post-click
        booking probability, for pCTR x pCVR) when the artifact has a CVR model. ``rows``:
        the candidates' snapshot rows when the caller has them (saves a lookup per id);
        ``query_match``: their ``qm_*`` columns when the caller computed them. The item
        columns of the returned mapping are gathered when first read (the model does not
        need them: it reads the item fields encoded at load)."""
        if not item_ids:
            return np.zeros(0), {}
        n = len(item_ids)
        rows = self.rows(item_ids) if rows is None else self._own(self._check_rows(rows, n))
        if self._item_idx is None or (rows < 0).any():
            cols: Mapping[str, np.ndarray] = self.columns(
                item_ids, query=query, market=market, state=state, user_id=user_id, rows=rows,
                query_match=query_match, recall=recall, now_ms=now_ms,
            )
        else:
            request = self._request_columns(
                item_ids, rows, query=query, state=state, user_id=user_id, item_cols=None,
                query_match=query_match, recall=recall, now_ms=now_ms,
            )
            cols = _LazyColumns(request, lambda: self._item_columns(item_ids, rows, market))
        p = self.calibrator.predict(self._predict(item_ids, cols, rows))
        if with_cvr and self.cvr is not None:
            cols = dict(cols)
            cols["p_cvr"] = self.cvr.predict_proba(cols)
        return p, cols

    def rows(self, item_ids: list[str]) -> np.ndarray:
        """Row per candidate (-1 for items the snapshot does not have): a snapshot row, or,
        aligned (:meth:`aligned_to`), a row of the item table it was aligned to."""
        if self._lookup is not None:
            return self._own(self._lookup(item_ids))
        get = self.item_row.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))

    @property
    def n_rows(self) -> int:
        """Rows of the item arrays (the snapshot's, or the aligned table's)."""
        return len(self.item_row) if self._known is None else len(self._known) - 1

    def _check_rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.shape != (n,) or rows.dtype.kind not in "iu" or (
            n and (rows.min() < -1 or rows.max() >= self.n_rows)
        ):
            raise ValueError(
                f"'rows' must be {n} snapshot rows in [-1, {self.n_rows}) (one per item "
                f"id); got shape {rows.shape}, dtype {rows.dtype}"
            )
        return rows.astype(np.int64, copy=False)

    def _query_match(
        self, query: str, rows: np.ndarray, cols: Mapping[str, np.ndarray] | None
    ) -> dict[str, np.ndarray]:
        """The qm_* columns: the term index for snapshot items, the pairwise function (on the
        request's market) for the few the snapshot lacks - the same values either way."""
        if (rows < 0).any():
            assert cols is not None  # the caller passes the item columns when rows are unknown
            n = len(rows)
            return query_match_features(
                [query] * n, *(cols[c].tolist() for c in _TEXT)
            )
        return self.terms().features(query, rows)

    def terms(self) -> TermIndex:
        """The snapshot's item terms (built once; a server shares its catalog's when the two
        hold the same items, see :func:`funnel.engine.core.Engine.load`)."""
        if self.term_index is None:
            self.term_index = TermIndex(*(self.item_cols[c].tolist() for c in _TEXT))
        return self.term_index

    def _predict(
        self, item_ids: list[str], cols: Mapping[str, np.ndarray],
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        import torch

        from funnel.rank.torch_ranker import TorchRanker

        rows = self.rows(item_ids) if rows is None else rows
        # item_parts are encoded inputs, which only the torch rankers score (precompute)
        if self.item_parts is None or (rows < 0).any() or not isinstance(self.ranker, TorchRanker):
            return self.ranker.predict_proba(cols)
        fs = self.ranker.features_
        parts = self._encode_request_fields(cols, rows)
        if self.item_parts is self._packed and self._item_idx is not None \
                and self._item_val is not None:
            idx, val = self._item_idx[rows], self._item_val[rows]
            for name, sl in self._item_slices.items():
                parts[name] = (idx[:, sl], val[:, sl])
        else:  # item_parts replaced after precompute
            for name, (idx, val) in self.item_parts.items():
                parts[name] = (idx[rows], val[rows])
        with torch.inference_mode():
            return self.ranker.predict_encoded(fs.assemble(parts))

    def _encode_request_fields(
        self, cols: Mapping[str, np.ndarray], rows: np.ndarray
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Encode the fields not precomputed per item. A field whose every source holds one
        value for the whole request is encoded once and broadcast (and remembered: requests
        repeat queries and positions); a cross of such a column with one item column is
        encoded once per distinct item value. Encoding is row by row, so this gives the same
        arrays as encoding every candidate."""
        fs = self.ranker.features_
        n = len(rows)
        codes = self.item_codes or {}
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        per_row: list[str] = []
        block: list[tuple[Any, Mapping[str, Any], int]] = []  # numeric: encoded as one block
        wide: list[Any] = []  # one value for the whole request
        assert fs.states_ is not None
        for spec, state, off in zip(fs.specs, fs.states_, fs.offsets, strict=True):
            if spec.name in (self.item_parts or {}):
                continue
            varying = [c for c in spec.sources if c not in _REQUEST_COLUMNS]
            if not varying:
                wide.append(spec)
            elif spec.type == "cross" and len(varying) == 1 and varying[0] in codes:
                # rows with one value of the item column encode alike: encode each value once
                # (all rows are snapshot rows here, so the item value is the snapshot's)
                _, firsts, inverse = np.unique(
                    codes[varying[0]][rows], return_index=True, return_inverse=True
                )
                sub = {c: cols[c][firsts] if c in _REQUEST_COLUMNS
                       else self.item_cols[c][rows[firsts]] for c in spec.sources}
                idx, val = fs.encode_fields(sub, [spec.name])[spec.name]
                out[spec.name] = (idx[inverse], val[inverse])
            elif spec.type == "numeric" and len(spec.sources) == 1 and np.asarray(
                cols[spec.sources[0]]
            ).dtype.kind in "fiu":
                block.append((spec, state, int(off)))
            else:
                per_row.append(spec.name)
        for name, (idx, val) in self._encode_wide(cols, wide).items():
            # read-only views: assemble copies them into the model input anyway
            out[name] = (np.broadcast_to(idx, (n, *idx.shape[1:])),
                         np.broadcast_to(val, (n, *val.shape[1:])))
        if block:
            out.update(_encode_numeric(cols, block))
        if per_row:
            sources = {c for s in fs.specs if s.name in per_row for c in s.sources}
            out.update(fs.encode_fields({c: cols[c] for c in sources}, per_row))
        return out

    def _encode_wide(
        self, cols: Mapping[str, np.ndarray], specs: list[Any]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """One row of each request-wide field of ``specs``, remembered by its source values;
        the ones not remembered are encoded together (one pass over the feature set)."""
        cache = self._broadcast
        first = {c: cols[c][:1] for spec in specs for c in spec.sources}
        keyed = {c: _hashable(v[0]) for c, v in first.items()}  # each source once
        keys = {spec.name: (spec.name, *(keyed[c] for c in spec.sources)) for spec in specs}
        out = {name: cache.get(key) for name, key in keys.items()}
        missing = [spec for spec in specs if out[spec.name] is None]
        if missing:
            sources = {c for spec in missing for c in spec.sources}
            encoded = self.ranker.features_.encode_fields(
                {c: first[c] for c in sources}, [spec.name for spec in missing])
            with self._lock:  # requests share the ranker
                for spec in missing:
                    if len(cache) >= _BROADCAST_CACHE:
                        cache.pop(next(iter(cache)), None)
                    cache[keys[spec.name]] = out[spec.name] = encoded[spec.name]
        return {name: got for name, got in out.items() if got is not None}  # all are, now


def _encode_numeric(
    cols: Mapping[str, np.ndarray], picked: list[tuple[Any, Mapping[str, Any], int]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``NumericSpec.encode`` of several fields (spec, fitted state, offset; float or int
    columns) over one (k, n) block: the same float64 operations element by element, so the
    same arrays, with one numpy call per step instead of one per field (a request has ~16:
    query match, session similarities, taste). ``tests/serve/test_fast_paths`` holds it to
    the feature set's own encoding."""
    x = np.stack([np.asarray(cols[spec.sources[0]]).astype(np.float64)
                  for spec, _, _ in picked])
    log = np.array([spec.log1p for spec, _, _ in picked])
    if log.any():
        x[log] = np.sign(x[log]) * np.log1p(np.abs(x[log]))
    mean = np.array([state["mean"] for _, state, _ in picked], dtype=np.float64)[:, None]
    x = np.where(np.isfinite(x), x, mean)
    scaled = np.array([spec.standardize for spec, _, _ in picked])
    if scaled.any():
        std = np.array([state["std"] for _, state, _ in picked], dtype=np.float64)[:, None]
        x[scaled] = (x[scaled] - mean[scaled]) / std[scaled]
    val = x.astype(np.float32)
    n = x.shape[1]
    return {spec.name: (np.full((n, 1), off, dtype=np.int64), val[i][:, None])
            for i, (spec, _, off) in enumerate(picked)}


_BROADCAST_CACHE = 4096
"""Request-wide field encodings kept per ranker (queries x positions x histories)."""


def _same(value: Any, n: int) -> np.ndarray:
    """``value`` (one object) in every one of ``n`` rows, as a read-only object column: a
    broadcast view, since filling 500 object slots costs more than everything that reads
    them (the encoders read one row of a request-wide column, debug output a few)."""
    one = np.empty(1, dtype=object)
    one[0] = value
    return np.broadcast_to(one, (n,))


def _hashable(value: Any) -> Any:
    """A dictionary key for one raw column value (lists, as histories are, become tuples)."""
    if isinstance(value, list | tuple | np.ndarray):
        return ("seq", *map(_hashable, value))
    if isinstance(value, float) and value != value:
        return ("nan",)  # NaN != NaN would never hit
    return (type(value).__name__, value)


def _check_recall(
    given: Mapping[str, np.ndarray] | None, sources: tuple[str, ...], n: int
) -> dict[str, np.ndarray]:
    """The ``rec_*`` columns of ``sources`` from ``given`` (each ``(n,)``), zeros when the
    caller has no merged candidates to derive them from (scored outside the funnel)."""
    from funnel.rank.recall_features import recall_feature_names

    out: dict[str, np.ndarray] = {}
    for name in recall_feature_names(sources):
        col = np.zeros(n, dtype=np.float32) if given is None or name not in given \
            else np.asarray(given[name], dtype=np.float32)
        if col.shape != (n,):
            raise ValueError(f"recall column {name!r} has shape {col.shape}; expected ({n},)")
        out[name] = col
    return out


def _check_query_match(given: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The caller's ``qm_*`` columns, checked: every one present, ``n`` rows each."""
    bad = [name for name in QUERY_MATCH_FEATURES
           if name not in given or np.shape(given[name]) != (n,)]
    if bad:
        raise ValueError(
            f"'query_match' must hold the columns {list(QUERY_MATCH_FEATURES)} with {n} rows "
            f"each (one per item id); missing or misshapen: {bad}"
        )
    return {name: given[name] for name in QUERY_MATCH_FEATURES}


_ORDER = ("item_id", "user_id", *_NUMERIC, *_TEXT, "position", "query")


def _column_order(cols: Collection[str]) -> list[str]:
    """Column names in the order :meth:`ServingRanker.columns` has always returned them
    (debug output lists features in this order)."""
    first = [c for c in _ORDER if c in cols]
    return first + [c for c in cols if c not in _ORDER]


class _LazyColumns(Mapping[str, np.ndarray]):
    """Feature columns of one request: the request's columns as computed, the item columns
    gathered on first read (a response shows them only in debug)."""

    def __init__(self, request: dict[str, np.ndarray], items: Any) -> None:
        self._data = dict(request)
        self._items = items
        item_names = ("item_id", *_NUMERIC, *_TEXT)
        self._names = _column_order({**dict.fromkeys(item_names), **request})

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._data and self._items is not None:
            self._data.update(self._items())
            self._items = None
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class _CandidateVectors(ItemVectorLookup):
    """An :class:`ItemVectorLookup` for one request: rows of that request's candidate list
    (the very sequence object) come from arrays mapped at load; any other ids (the session's
    clicks) are looked up as usual. Shares the lookup's arrays; never mutates them."""

    _ids: Sequence[str]
    _known: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, base: ItemVectorLookup, ids: Sequence[str], rows: np.ndarray,
           found: np.ndarray, type_rows: np.ndarray | None) -> _CandidateVectors:
        view = object.__new__(cls)
        view.__dict__.update(base.__dict__)
        view._ids, view._known = ids, (rows, found)
        if type_rows is not None and base.types is not None:
            view.types = base.types.for_items(ids, type_rows)
        return view

    def rows(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if ids is self._ids:
            return self._known[0].copy(), self._known[1].copy()
        return super().rows(ids)


def load_serving_ranker(
    artifact_dir: Path, vectors: ItemVectorLookup | None = None
) -> ServingRanker:
    """Load ``<artifact>/rank`` (and item vectors from ``<artifact>/embeddings`` if present)."""
    rank_dir = artifact_dir / "rank"
    cfg_path = rank_dir / "serving.json"
    if not cfg_path.exists():
        raise ArtifactError(f"{cfg_path}: missing; rebuild with 'funnel train'")
    cfg: dict[str, Any] = json.loads(cfg_path.read_text())
    ranker = Ranker.load(rank_dir / "models" / cfg["model"])
    items = pq.read_table(rank_dir / "items.parquet")
    item_cols = {name: items.column(name).to_numpy(zero_copy_only=False)
                 for name in items.column_names}
    item_row = {i: r for r, i in enumerate(item_cols["item_id"].tolist())}
    for name in _NUMERIC:
        item_cols[name] = np.asarray(item_cols[name], dtype=np.float64)
    for name in _TEXT:  # snapshots written before a column existed serve it as unknown
        item_cols.setdefault(name, np.full(len(item_row), None, dtype=object))
    if vectors is None:
        markets = dict(zip(item_cols["item_id"].tolist(), item_cols["market"].tolist(),
                           strict=True))
        emb = artifact_dir / "embeddings"
        keys = ("item_id", "market", "category", "brand", "price")
        rows = zip(*(item_cols[k] for k in keys), strict=True)
        catalog = [dict(zip(keys, r, strict=True)) for r in rows]
        types_dir = emb if (emb / "type_meta.json").exists() else rank_dir  # as build_rank
        for where in (emb, rank_dir):
            if (where / "item_vectors.npy").exists():
                vectors = ItemVectorLookup.from_directory(
                    where, item_market=markets, catalog=catalog, types_dir=types_dir)
                break
    cvr = Ranker.load(rank_dir / "cvr") if cfg.get("has_cvr") else None
    return ServingRanker(
        ranker=ranker, calibrator=calibrator_from_dict(cfg["calibrator"]), item_row=item_row,
        item_cols=item_cols, vectors=vectors, recent_k=int(cfg["recent_k"]),
        position=int(cfg["serving_position"]), cvr=cvr,
        history_len=int(cfg.get("history_len", DEFAULT_HISTORY_LEN)),
        recall_sources=tuple(cfg.get("recall_features", ())),
        state_scope=str(cfg.get("state", "session" if cfg.get("recall_features") else "user")),
    ).precompute()
