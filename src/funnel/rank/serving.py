"""The rank stage at serving time: candidate ids + request + session state -> pCTR.

Raw columns are assembled from the item snapshot written at training time, the request (query,
fixed position) and the live :class:`RecentActions` (recent clicks and the KDD'18 similarities
through the same ``personalization_features`` the training rows used), then scored by the saved
ranker through the same ``FeatureSet.transform``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from funnel.exceptions import ArtifactError
from funnel.features.personalization import (
    ItemVectorLookup,
    RecentActions,
    personalization_features,
)
from funnel.features.query_match import TermIndex, query_match_features
from funnel.rank.base import Ranker
from funnel.rank.calibration import Calibrator, calibrator_from_dict

_NUMERIC = ("price", "bid", "item_imps_before", "item_clicks_before", "item_bookings_before",
            "item_ctr_before")
_TEXT = ("title", "category", "brand", "market")
_ITEM_COLUMNS = frozenset({"item_id", *_NUMERIC, *_TEXT})
_REQUEST_COLUMNS = frozenset({"user_id", "position", "query", "recent_clicks", "n_recent_clicks"})
"""Raw columns :meth:`ServingRanker.columns` fills with one value for every candidate."""


def clip_state(state: RecentActions, k: int) -> RecentActions:
    """``state`` as ``observe`` would hold it with ``max_len = k`` (the server keeps more)."""
    if state.max_len <= k:
        return state
    return replace(
        state, clicks=state.clicks[-k:], long_clicks=state.long_clicks[-k:],
        skips=state.skips[-k:], bookings=state.bookings[-k:], shown=state.shown[-4 * k :],
        max_len=k,
    )


@dataclass
class ServingRanker:
    """Scores candidates for one request; read-only after load, safe to share across requests."""

    ranker: Ranker
    calibrator: Calibrator
    item_row: dict[str, int]
    item_cols: dict[str, np.ndarray]
    vectors: ItemVectorLookup | None
    recent_k: int
    position: int
    cvr: Ranker | None = None
    item_parts: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    """Item-side fields encoded once per snapshot item (rows = snapshot rows)."""
    term_index: TermIndex | None = None
    """The snapshot's item terms, for the query-match features of a whole request at once."""
    item_codes: dict[str, np.ndarray] | None = None
    """Per text column, an integer code per snapshot row (equal codes, equal values)."""

    def precompute(self) -> ServingRanker:
        """Encode every field that depends on the item alone, once (the request then encodes
        only query/session fields: the same numbers, a fraction of the work). The item terms
        are indexed on first use (:meth:`terms`), or shared by a caller that has them."""
        import pandas as pd

        from funnel.rank.torch_ranker import TorchRanker

        self.item_codes = {
            c: pd.factorize(pd.Series(self.item_cols[c], dtype=object))[0] for c in _TEXT
        }
        if not isinstance(self.ranker, TorchRanker):
            return self
        fs = self.ranker.features_
        item_only = [s.name for s in fs.specs if set(s.sources) <= _ITEM_COLUMNS]
        cols = {k: v for k, v in self.item_cols.items() if k in _ITEM_COLUMNS}
        self.item_parts = fs.encode_fields(cols, item_only)
        return self

    def columns(
        self, item_ids: list[str], *, query: str, market: str | None, state: RecentActions,
        user_id: str | None = None, rows: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The raw feature columns of the candidates, as a training row would have them
        (``rows``: their snapshot rows if the caller has them, see :meth:`rows`)."""
        n = len(item_ids)
        state = clip_state(state, self.recent_k)  # the window training rows were replayed with
        rows = self.rows(item_ids) if rows is None else self._check_rows(rows, n)
        known = rows >= 0
        safe = np.where(known, rows, 0)
        cols: dict[str, np.ndarray] = {"item_id": np.array(item_ids, dtype=object)}
        cols["user_id"] = np.full(n, user_id, dtype=object)  # None -> out-of-vocabulary
        for name in _NUMERIC:
            cols[name] = np.where(known, self.item_cols[name][safe], np.nan)
        for name in _TEXT:
            cols[name] = np.where(known, self.item_cols[name][safe], None)
        if market is not None:
            cols["market"] = np.where(known, cols["market"], market)
        cols["position"] = np.full(n, self.position, dtype=np.int64)
        cols["query"] = np.full(n, query or "", dtype=object)
        cols.update(self._query_match(query or "", rows, known, cols))
        recent = list(state.clicks[-self.recent_k :])
        seq = np.empty(n, dtype=object)
        seq[:] = [recent] * n
        cols["recent_clicks"] = seq
        cols["n_recent_clicks"] = np.full(n, len(recent), dtype=np.int64)
        if self.vectors is not None:
            cols.update(personalization_features(item_ids, state, self.vectors))
        return cols

    def score(
        self, item_ids: list[str], *, query: str, market: str | None, state: RecentActions,
        user_id: str | None = None, with_cvr: bool = False, rows: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(calibrated pCTR, raw feature columns); ``with_cvr`` adds ``p_cvr`` (post-click
        booking probability, for pCTR x pCVR) when the artifact has a CVR model. ``rows``:
        the candidates' snapshot rows when the caller has them (saves a lookup per id)."""
        if not item_ids:
            return np.zeros(0), {}
        rows = self.rows(item_ids) if rows is None else self._check_rows(rows, len(item_ids))
        cols = self.columns(
            item_ids, query=query, market=market, state=state, user_id=user_id, rows=rows
        )
        p = self.calibrator.predict(self._predict(item_ids, cols, rows))
        if with_cvr and self.cvr is not None:
            cols["p_cvr"] = self.cvr.predict_proba(cols)
        return p, cols

    def rows(self, item_ids: list[str]) -> np.ndarray:
        """Snapshot row per candidate (-1 for items the snapshot does not have)."""
        get = self.item_row.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))

    def _check_rows(self, rows: np.ndarray, n: int) -> np.ndarray:
        rows = np.asarray(rows)
        if rows.shape != (n,) or rows.dtype.kind not in "iu" or (
            n and (rows.min() < -1 or rows.max() >= len(self.item_row))
        ):
            raise ValueError(
                f"'rows' must be {n} snapshot rows in [-1, {len(self.item_row)}) (one per item "
                f"id); got shape {rows.shape}, dtype {rows.dtype}"
            )
        return rows.astype(np.int64, copy=False)

    def _query_match(
        self, query: str, rows: np.ndarray, known: np.ndarray, cols: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The qm_* columns: the term index for snapshot items, the pairwise function (on the
        request's market) for the few the snapshot lacks - the same values either way."""
        if not known.all():
            n = len(rows)
            return query_match_features(
                [query] * n, *(cols[c].tolist() for c in _TEXT)
            )
        return self.terms().features(query, rows)

    def terms(self) -> TermIndex:
        """The snapshot's item terms (built once; a server shares its catalog's when the two
        hold the same items, see :func:`funnel.serve.engine.Engine.load`)."""
        if self.term_index is None:
            self.term_index = TermIndex(*(self.item_cols[c].tolist() for c in _TEXT))
        return self.term_index

    def _predict(
        self, item_ids: list[str], cols: dict[str, np.ndarray], rows: np.ndarray | None = None
    ) -> np.ndarray:
        rows = self.rows(item_ids) if rows is None else rows
        if self.item_parts is None or (rows < 0).any():
            return self.ranker.predict_proba(cols)
        fs = self.ranker.features_
        parts = self._encode_request_fields(cols, rows)
        for name, (idx, val) in self.item_parts.items():
            parts[name] = (idx[rows], val[rows])
        return self.ranker.predict_encoded(fs.assemble(parts))  # type: ignore[attr-defined]

    def _encode_request_fields(
        self, cols: dict[str, np.ndarray], rows: np.ndarray
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Encode the fields not precomputed per item. A field whose every source holds one
        value for the whole request is encoded once and broadcast; a cross of such a column
        with one item column is encoded once per distinct item value. Encoding is row by row,
        so this gives the same arrays as encoding every candidate."""
        fs = self.ranker.features_
        n = len(rows)
        codes = self.item_codes or {}
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        per_row: list[str] = []
        for spec in fs.specs:
            if spec.name in (self.item_parts or {}):
                continue
            varying = [c for c in spec.sources if c not in _REQUEST_COLUMNS]
            if not varying:
                first = {c: cols[c][:1] for c in spec.sources}
                idx, val = fs.encode_fields(first, [spec.name])[spec.name]
                out[spec.name] = (np.repeat(idx, n, axis=0), np.repeat(val, n, axis=0))
            elif spec.type == "cross" and len(varying) == 1 and varying[0] in codes:
                # rows with one value of the item column encode alike: encode each value once
                _, firsts, inverse = np.unique(
                    codes[varying[0]][rows], return_index=True, return_inverse=True
                )
                sub = {c: cols[c][firsts] for c in spec.sources}
                idx, val = fs.encode_fields(sub, [spec.name])[spec.name]
                out[spec.name] = (idx[inverse], val[inverse])
            else:
                per_row.append(spec.name)
        out.update(fs.encode_fields(cols, per_row))
        return out


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
    ).precompute()
