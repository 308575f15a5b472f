"""Declarative feature specs, fitted once, encoded by one function for training and serving.

Every spec turns raw column(s) into ``width`` slots of ``(index, value)``: a categorical value is
one slot with value 1 (or the hash sign), a numeric value is one slot whose value is the
transformed number, a sequence is ``max_len`` slots whose values average the tokens (zero-valued
padding). A :class:`FeatureSet` lays the specs' index ranges side by side, so the whole input of a
model is two dense arrays ``idx (n, M)`` and ``val (n, M)`` plus a slot -> field map. Fitted state
(vocabularies, quantile edges, means) is plain JSON saved with the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from funnel._checks import check_is_fitted
from funnel.config import from_mapping
from funnel.exceptions import ConfigError
from funnel.features.hashing import hash_bucket

MISSING = "\x00missing"


def as_columns(data: Any) -> dict[str, np.ndarray]:
    """Raw rows as ``{column: 1-D array}`` from a mapping, a pyarrow Table or a DataFrame."""
    if hasattr(data, "column_names") and hasattr(data, "column"):  # pyarrow.Table
        out = {}
        for name in data.column_names:
            col = data.column(name)
            if hasattr(col.type, "value_type"):  # list column -> object array of lists
                out[name] = np.array(col.to_pylist() + [None], dtype=object)[:-1]
            else:
                out[name] = col.to_numpy(zero_copy_only=False)
        return out
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        return {str(c): data[c].to_numpy() for c in data.columns}
    if isinstance(data, Mapping):
        return {str(k): v if isinstance(v, np.ndarray) else _to_array(v) for k, v in data.items()}
    raise TypeError(
        f"expected a mapping of columns, a pyarrow.Table or a pandas.DataFrame; "
        f"got {type(data).__name__}"
    )


def _to_array(values: Any) -> np.ndarray:
    values = list(values)
    if values and isinstance(values[0], list | tuple | np.ndarray):
        arr = np.empty(len(values), dtype=object)
        arr[:] = [list(v) if isinstance(v, list | tuple | np.ndarray) else v for v in values]
        return arr
    return np.asarray(values)


def _column(columns: Mapping[str, np.ndarray], name: str, spec: str) -> np.ndarray:
    if name not in columns:
        raise KeyError(
            f"feature '{spec}' needs column '{name}', which is missing; "
            f"got columns {sorted(columns)}"
        )
    return np.asarray(columns[name])


def _as_float(col: np.ndarray, spec: str) -> np.ndarray:
    try:
        if col.dtype == object:
            return np.array([np.nan if v is None else float(v) for v in col], dtype=np.float64)
        return col.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"feature '{spec}': column is not numeric ({err})") from None


def _str_of(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return MISSING
    return str(v)


def _as_str(col: np.ndarray) -> np.ndarray:
    """Values as an object array of ``str`` (missing -> ``MISSING``), fast for str columns."""
    if col.dtype.kind in "iub":
        return col.astype(str).astype(object)
    out = np.empty(len(col), dtype=object)
    out[:] = [v if type(v) is str else _str_of(v) for v in col.tolist()]
    return out


def _vocab_lookup(state: Mapping[str, Any]) -> dict[Any, int]:
    """``{token: local id}`` (1-based; 0 is out of vocabulary) of a fitted ``state["vocab"]``.

    Built once per fitted state and cached on it when it is a dict (as a :class:`FeatureSet`'s
    states are) under ``_lookup``; keys starting with '_' are never saved.
    """
    lookup: dict[Any, int] | None = state.get("_lookup")
    if lookup is None:
        lookup = {v: i + 1 for i, v in enumerate(state["vocab"])}
        if isinstance(state, MutableMapping):
            state["_lookup"] = lookup
    return lookup


def _one(n: int) -> np.ndarray:
    return np.ones((n, 1), dtype=np.float32)


class _OneColumn:
    """A spec read from one column: ``column`` or, when empty, its own ``name``."""

    name: str
    column: str

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.column or self.name,)


class _OneIndex(_OneColumn):
    """A spec whose row value is one local index (a bucket or a vocabulary id)."""

    def _local(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> tuple:
        local = self._local(columns, state)
        return local[:, None], _one(len(local))

    def dense(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        return self._local(columns, state).astype(np.float64)


@dataclass(frozen=True)
class NumericSpec(_OneColumn):
    """A number as one slot: optional signed ``log1p``, then optional standardization.

    Missing values become the training mean (0 after standardizing).
    """

    name: str
    column: str = ""
    log1p: bool = False
    standardize: bool = True
    type: ClassVar[str] = "numeric"


    width = 1

    def _raw(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        x = _as_float(_column(columns, self.sources[0], self.name), self.name)
        return np.sign(x) * np.log1p(np.abs(x)) if self.log1p else x

    def fit(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        x = self._raw(columns)
        ok = x[np.isfinite(x)]
        mean = float(ok.mean()) if ok.size else 0.0
        std = float(ok.std()) if ok.size else 1.0
        return {"mean": mean, "std": std if std > 1e-12 else 1.0}

    def size(self, state: Mapping[str, Any]) -> int:
        return 1

    def encode(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> tuple:
        x = self._raw(columns)
        x = np.where(np.isfinite(x), x, state["mean"])
        if self.standardize:
            x = (x - state["mean"]) / state["std"]
        return np.zeros((len(x), 1), dtype=np.int64), x.astype(np.float32)[:, None]

    def dense(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        x = self._raw(columns)
        return np.where(np.isfinite(x), x, np.nan)


@dataclass(frozen=True)
class BucketSpec(_OneIndex):
    """A number cut at training quantiles into ``n_buckets`` categories (index 0 = missing)."""

    name: str
    column: str = ""
    n_buckets: int = 10
    log1p: bool = False
    type: ClassVar[str] = "bucket"
    width = 1


    def _raw(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        x = _as_float(_column(columns, self.sources[0], self.name), self.name)
        return np.sign(x) * np.log1p(np.abs(x)) if self.log1p else x

    def fit(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.n_buckets < 2:
            raise ValueError(
                f"BucketSpec '{self.name}': n_buckets must be >= 2, got {self.n_buckets}"
            )
        x = self._raw(columns)
        ok = x[np.isfinite(x)]
        if ok.size == 0:
            return {"edges": []}
        qs = np.quantile(ok, np.linspace(0, 1, self.n_buckets + 1)[1:-1])
        return {"edges": [float(v) for v in np.unique(qs)]}

    def size(self, state: Mapping[str, Any]) -> int:
        return len(state["edges"]) + 2

    def _local(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        x = self._raw(columns)
        idx = np.searchsorted(np.asarray(state["edges"], dtype=np.float64), x, side="right") + 1
        return np.where(np.isfinite(x), idx, 0).astype(np.int64)


@dataclass(frozen=True)
class VocabSpec(_OneIndex):
    """A category through a vocabulary of values seen ``>= min_count`` times; index 0 = OOV."""

    name: str
    column: str = ""
    min_count: int = 1
    max_size: int = 0
    """Keep at most this many most frequent values (0 = no limit)."""
    type: ClassVar[str] = "vocab"
    width = 1


    def fit(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        values = _as_str(_column(columns, self.sources[0], self.name))
        uniq, counts = np.unique(values[values != MISSING], return_counts=True)
        pairs = zip(uniq.tolist(), counts.tolist(), strict=True)
        order = sorted(pairs, key=lambda t: (-t[1], t[0]))
        vocab = [v for v, c in order if c >= self.min_count]
        if self.max_size:
            vocab = vocab[: self.max_size]
        return {"vocab": vocab}

    def size(self, state: Mapping[str, Any]) -> int:
        return len(state["vocab"]) + 1

    def _local(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        values = _as_str(_column(columns, self.sources[0], self.name))
        lookup = _vocab_lookup(state)
        return np.array(list(map(lookup.get, values.tolist(), repeat(0, len(values)))),
                        dtype=np.int64)


@dataclass(frozen=True)
class HashSpec(_OneColumn):
    """A category through the signed hashing trick into ``2^bits`` buckets (no vocabulary)."""

    name: str
    column: str = ""
    bits: int = 16
    seed: int = 0
    type: ClassVar[str] = "hash"
    width = 1


    def fit(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if not 1 <= self.bits <= 30:
            raise ValueError(f"HashSpec '{self.name}': bits must be in [1, 30], got {self.bits}")
        _column(columns, self.sources[0], self.name)
        return {}

    def size(self, state: Mapping[str, Any]) -> int:
        return 1 << self.bits

    def _values(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return _as_str(_column(columns, self.sources[0], self.name))

    def encode(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> tuple:
        buckets, signs = hash_bucket(self._values(columns), self.bits, self.seed)
        return buckets[:, None], signs[:, None]

    def dense(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        buckets, _ = hash_bucket(self._values(columns), self.bits, self.seed)
        return buckets.astype(np.float64)


@dataclass(frozen=True)
class CrossSpec(HashSpec):
    """The conjunction of several columns' values, hashed (signed) into ``2^bits`` buckets."""

    columns: tuple[str, ...] = ()
    type: ClassVar[str] = "cross"

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def fit(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if len(self.columns) < 2:
            raise ValueError(
                f"CrossSpec '{self.name}': columns must name >= 2 columns, got {self.columns!r}"
            )
        for c in self.columns:
            _column(columns, c, self.name)
        return super().fit({self.name: np.zeros(0)} | dict(columns))

    def _values(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        parts = [_as_str(_column(columns, c, self.name)) for c in self.columns]
        out = parts[0]
        for p in parts[1:]:
            out = out + "\x1f" + p
        return out


@dataclass(frozen=True)
class SequenceSpec(_OneColumn):
    """A multi-valued or sequence column (list of tokens per row), hashed, mean-pooled.

    Keeps the last ``max_len`` tokens (most recent last, as in a click history); each kept token
    is one slot with value ``sign / n_kept``; padding slots have value 0.
    """

    name: str
    column: str = ""
    max_len: int = 10
    bits: int = 16
    seed: int = 0
    sep: str = "|"
    type: ClassVar[str] = "sequence"


    @property
    def width(self) -> int:
        return self.max_len

    def fit(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.max_len < 1:
            raise ValueError(
                f"SequenceSpec '{self.name}': max_len must be >= 1, got {self.max_len}"
            )
        _column(columns, self.sources[0], self.name)
        return {}

    def size(self, state: Mapping[str, Any]) -> int:
        return 1 << self.bits

    def _tokens(self, v: Any) -> list[str]:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return []
        if isinstance(v, str):
            toks = [t for t in v.split(self.sep) if t] if v else []
        else:
            toks = [str(t) for t in v if t is not None]
        return toks[-self.max_len :]

    def encode(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> tuple:
        col = _column(columns, self.sources[0], self.name)
        n, width = len(col), self.max_len
        rows = [self._tokens(v) for v in col]
        lens = np.fromiter((len(r) for r in rows), dtype=np.int64, count=n)
        flat = np.array([t for r in rows for t in r], dtype=object)
        buckets, signs = hash_bucket(flat, self.bits, self.seed)
        idx = np.zeros((n, width), dtype=np.int64)
        val = np.zeros((n, width), dtype=np.float32)
        row_of = np.repeat(np.arange(n), lens)
        starts = np.cumsum(lens) - lens
        pos = np.arange(len(flat)) - np.repeat(starts, lens)
        idx[row_of, pos] = buckets
        val[row_of, pos] = signs / np.repeat(np.maximum(lens, 1), lens).astype(np.float32)
        return idx, val

    def dense(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        col = _column(columns, self.sources[0], self.name)
        return np.array([len(self._tokens(v)) for v in col], dtype=np.float64)


@dataclass(frozen=True)
class HistorySpec:
    """A history of item ids (e.g. ``recent_clicks``) seen through one item attribute.

    Why: the click model of a marketplace crosses the user's interests with the candidate's
    attributes (category, brand, price level). Mapping the user's recent clicks to those
    attributes gives factorization models a field whose embedding meets the candidate's own
    ``category``/``brand``/``price_bucket`` embedding; a raw id history is too sparse for that.
    At fit the item -> value map is learned from the training rows' ``key`` and ``attribute``
    columns (numeric attributes cut at ``n_buckets`` quantiles over distinct items); transform
    reads only the history column, so serving needs nothing but the ids. The last ``max_len``
    known items are mean-pooled like a :class:`SequenceSpec`; unknown ids are skipped.
    """

    name: str
    column: str = "recent_clicks"
    key: str = "item_id"
    attribute: str = "category"
    max_len: int = 10
    n_buckets: int = 0
    """0: a categorical attribute; >= 2: a numeric one, cut into this many quantile buckets."""
    type: ClassVar[str] = "history"

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def width(self) -> int:
        return self.max_len

    def fit(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.max_len < 1:
            raise ValueError(f"HistorySpec '{self.name}': max_len must be >= 1, got {self.max_len}")
        if self.n_buckets == 1 or self.n_buckets < 0:
            raise ValueError(
                f"HistorySpec '{self.name}': n_buckets must be 0 (categorical) or >= 2, "
                f"got {self.n_buckets}"
            )
        _column(columns, self.column, self.name)
        keys = _as_str(_column(columns, self.key, self.name)).tolist()
        raw = _column(columns, self.attribute, self.name)
        first = dict(zip(keys, range(len(keys)), strict=True))  # one row per distinct item
        rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
        if self.n_buckets:
            x = _as_float(raw[rows], self.name)
            ok = x[np.isfinite(x)]
            qs = np.quantile(ok, np.linspace(0, 1, self.n_buckets + 1)[1:-1]) if ok.size else []
            edges = np.unique(np.asarray(qs, dtype=np.float64))
            band = np.searchsorted(edges, x, side="right")
            values = np.where(np.isfinite(x), band.astype(str), MISSING).astype(object)
        else:
            values = _as_str(raw[rows])
        vocab = sorted(set(values.tolist()))
        local = {v: k + 1 for k, v in enumerate(vocab)}
        items = {item: local[v] for item, v in zip(first, values.tolist(), strict=True)}
        return {"vocab": vocab, "items": items}

    def size(self, state: Mapping[str, Any]) -> int:
        return len(state["vocab"]) + 1

    def _unique(
        self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]
    ) -> tuple[list[list[int]], np.ndarray]:
        """(value codes of each distinct history object, row -> its index); serving passes one
        history object for all candidates, so the work is per request, not per row."""
        items = state["items"]
        col = _column(columns, self.column, self.name)
        where: dict[int, int] = {}
        hists: list[list[int]] = []
        inverse = np.empty(len(col), dtype=np.int64)
        for r, v in enumerate(col.tolist()):
            k = where.get(id(v))
            if k is None:
                k = where[id(v)] = len(hists)
                if v is None or (isinstance(v, float) and np.isnan(v)):
                    hists.append([])
                else:
                    ids = v.split("|") if isinstance(v, str) else v
                    hists.append([items[i] for i in ids if i in items][-self.max_len :])
            inverse[r] = k
        return hists, inverse

    def encode(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> tuple:
        hists, inverse = self._unique(columns, state)
        idx = np.zeros((len(hists), self.max_len), dtype=np.int64)
        val = np.zeros((len(hists), self.max_len), dtype=np.float32)
        for r, toks in enumerate(hists):
            if toks:
                idx[r, : len(toks)] = toks
                val[r, : len(toks)] = 1.0 / len(toks)
        return idx[inverse], val[inverse]

    def dense(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        """The most recent known item's value code (0 = none), for tree models."""
        hists, inverse = self._unique(columns, state)
        return np.array([h[-1] if h else 0 for h in hists], dtype=np.float64)[inverse]


@dataclass(frozen=True)
class VocabSequenceSpec(_OneColumn):
    """A list column through a vocabulary, one slot per position: the input of attention.

    Why: target attention (DIN) needs each history entry apart, aligned with the entries of the
    sibling columns (event kind, age), and its item ids in the candidate's own vocabulary so
    one embedding row serves both. The last ``max_len`` tokens fill the first slots in order
    (most recent last) with value 1; padding slots have index 0 and value 0, and an
    out-of-vocabulary token index 0 and value 1 (the entry exists, its id is unknown).
    ``key`` names the column whose values make the vocabulary (``min_count`` / ``max_size``
    as in :class:`VocabSpec`, so ``key="item_id"`` with the item field's settings gives that
    field's very vocabulary); empty, the list column's own tokens make it.
    """

    name: str
    column: str = ""
    key: str = ""
    min_count: int = 1
    max_size: int = 0
    max_len: int = 20
    type: ClassVar[str] = "vocab_sequence"

    @property
    def width(self) -> int:
        return self.max_len

    def fit(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.max_len < 1:
            raise ValueError(
                f"VocabSequenceSpec '{self.name}': max_len must be >= 1, got {self.max_len}")
        col = _column(columns, self.sources[0], self.name)
        if self.key:
            vocab = VocabSpec(self.name, self.key, self.min_count, self.max_size)
            return vocab.fit(columns)
        tokens = np.array([t for v in col.tolist() for t in _list_of(v)], dtype=object)
        return VocabSpec(self.name, "t", self.min_count, self.max_size).fit({"t": tokens})

    def size(self, state: Mapping[str, Any]) -> int:
        return len(state["vocab"]) + 1

    def encode(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> tuple:
        lookup = _vocab_lookup(state)
        col = _column(columns, self.sources[0], self.name)
        where: dict[int, int] = {}  # serving passes one list object for every candidate
        firsts: list[Any] = []
        inverse = np.empty(len(col), dtype=np.int64)
        for r, v in enumerate(col.tolist()):
            k = where.get(id(v))
            if k is None:
                k = where[id(v)] = len(firsts)
                firsts.append(v)
            inverse[r] = k
        idx = np.zeros((len(firsts), self.max_len), dtype=np.int64)
        val = np.zeros((len(firsts), self.max_len), dtype=np.float32)
        for r, v in enumerate(firsts):
            toks = _list_of(v)[-self.max_len :]
            idx[r, : len(toks)] = [lookup.get(t, 0) for t in toks]
            val[r, : len(toks)] = 1.0
        return idx[inverse], val[inverse]

    def dense(self, columns: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> np.ndarray:
        """The number of entries kept, for tree models."""
        col = _column(columns, self.sources[0], self.name)
        return np.array([len(_list_of(v)[-self.max_len :]) for v in col], dtype=np.float64)


def _list_of(v: Any) -> list[str]:
    """A list cell's tokens as str (None / NaN: empty)."""
    if v is None or (isinstance(v, float) and v != v):
        return []
    return [str(t) for t in v]


Spec = (NumericSpec | BucketSpec | VocabSpec | HashSpec | CrossSpec | SequenceSpec | HistorySpec
        | VocabSequenceSpec)
SPEC_TYPES: dict[str, type] = {
    c.type: c for c in (NumericSpec, BucketSpec, VocabSpec, HashSpec, CrossSpec, SequenceSpec,
                        HistorySpec, VocabSequenceSpec)
}
CATEGORICAL_TYPES = frozenset({"bucket", "vocab", "hash", "cross"})


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    out = {"type": spec.type, **asdict(spec)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def spec_from_dict(raw: Mapping[str, Any]) -> Spec:
    """Rebuild a spec from its JSON form; unknown types or keys are a ``ConfigError``."""
    raw = dict(raw)
    kind = raw.pop("type", None)
    if kind not in SPEC_TYPES:
        raise ConfigError(
            f"feature spec type must be one of {sorted(SPEC_TYPES)}; got {kind!r} in {raw!r}"
        )
    return from_mapping(SPEC_TYPES[kind], raw, where=f"feature spec {raw.get('name')!r}")


@dataclass(frozen=True)
class Encoded:
    """Model input: ``idx`` int64 (n, M) global feature indices, ``val`` float32 (n, M)."""

    idx: np.ndarray
    val: np.ndarray

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    def take(self, rows: np.ndarray) -> Encoded:
        return Encoded(self.idx[rows], self.val[rows])


@dataclass
class FeatureSet:
    """An ordered list of specs (one field each), fitted once and encoded the same way always.

    Example
    -------
    >>> fs = FeatureSet([VocabSpec("cat"), NumericSpec("price", log1p=True)])
    >>> fs = fs.fit({"cat": ["a", "b"], "price": [1.0, 9.0]})
    >>> enc = fs.transform({"cat": ["a"], "price": [3.0]})
    >>> enc.idx.shape, fs.num_fields
    ((1, 2), 2)
    """

    specs: Sequence[Spec]
    states_: list[dict[str, Any]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"feature names must be unique; got {names}")
        if not names:
            raise ConfigError("a FeatureSet needs at least one feature spec; got none")

    # ---- fitting -------------------------------------------------------------------------
    def fit(self, data: Any) -> FeatureSet:
        columns = as_columns(data)
        self.states_ = [s.fit(columns) for s in self.specs]
        return self

    @property
    def field_names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def num_fields(self) -> int:
        return len(self.specs)

    @property
    def field_sizes(self) -> list[int]:
        check_is_fitted(self, "states_")
        assert self.states_ is not None
        return [s.size(st) for s, st in zip(self.specs, self.states_, strict=True)]

    @property
    def offsets(self) -> np.ndarray:
        cached = getattr(self, "_offsets", None)
        if cached is not None and cached[0] is self.states_:
            return cached[1]
        off = np.concatenate([[0], np.cumsum(self.field_sizes)[:-1]]).astype(np.int64)
        self._offsets = (self.states_, off)
        return off

    @property
    def num_features(self) -> int:
        return int(sum(self.field_sizes))

    @property
    def slot_fields(self) -> np.ndarray:
        """Field of each input slot, (M,) int64; sequences own several slots."""
        return np.repeat(np.arange(self.num_fields), [s.width for s in self.specs]).astype(np.int64)

    @property
    def source_columns(self) -> list[str]:
        return sorted({c for s in self.specs for c in s.sources})

    # ---- encoding (the one path for training and serving) ---------------------------------
    def transform(self, data: Any) -> Encoded:
        """Raw columns -> :class:`Encoded` model input."""
        return self.assemble(self.encode_fields(data, self.field_names))

    def encode_fields(
        self, data: Any, names: Sequence[str]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{field: (global idx (n, width), val (n, width))}`` for the named fields only.

        Lets a server encode item-side fields once per item and only the request-side fields
        per request; :meth:`assemble` joins the parts exactly as :meth:`transform` would.
        """
        check_is_fitted(self, "states_")
        assert self.states_ is not None
        columns = as_columns(data)
        wanted = set(names)
        unknown = wanted - set(self.field_names)
        if unknown:
            raise KeyError(f"unknown field(s) {sorted(unknown)}; fields are {self.field_names}")
        out = {}
        for spec, state, off in zip(self.specs, self.states_, self.offsets, strict=True):
            if spec.name in wanted:
                local, val = spec.encode(columns, state)
                out[spec.name] = (local + off, val)
        return out

    def assemble(self, parts: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Encoded:
        """Join per-field parts (every field present, any order) into model input."""
        missing = [n for n in self.field_names if n not in parts]
        if missing:
            raise KeyError(f"assemble needs every field; missing {missing}")
        names = self.field_names
        return Encoded(
            np.ascontiguousarray(np.concatenate([parts[n][0] for n in names], axis=1)),
            np.ascontiguousarray(np.concatenate([parts[n][1] for n in names], axis=1)),
        )

    def dense(self, data: Any) -> tuple[np.ndarray, list[int]]:
        """A (n, F) float matrix for trees, plus the indices of its categorical columns."""
        check_is_fitted(self, "states_")
        assert self.states_ is not None
        columns = as_columns(data)
        mats = [s.dense(columns, st) for s, st in zip(self.specs, self.states_, strict=True)]
        cats = [i for i, s in enumerate(self.specs) if s.type in ("bucket", "vocab", "history")]
        return np.stack(mats, axis=1), cats

    # ---- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        check_is_fitted(self, "states_")
        assert self.states_ is not None
        return {
            "specs": [spec_to_dict(s) for s in self.specs],
            "states": [{k: v for k, v in st.items() if not k.startswith("_")}
                       for st in self.states_],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FeatureSet:
        unknown = set(raw) - {"specs", "states"}
        if unknown:
            raise ConfigError(f"feature set: unknown key(s) {sorted(unknown)}")
        specs = [spec_from_dict(s) for s in raw["specs"]]
        states = raw.get("states")
        if states is not None and len(states) != len(specs):
            raise ConfigError(f"feature set: {len(states)} states for {len(specs)} specs")
        return cls(specs, states_=[dict(s) for s in states] if states is not None else None)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> FeatureSet:
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_specs(cls, raw: Sequence[Mapping[str, Any]]) -> FeatureSet:
        """An unfitted set from JSON/TOML spec dicts (``{"type": "vocab", "name": ...}``)."""
        return cls([spec_from_dict(s) for s in raw])
