"""User-type and item-type embeddings from booking sequences (Grbovic & Cheng 2018, sec. 3.2).

Bookings are too sparse to embed single users and items, so both are mapped to *types* by
bucketing rules, and each user's bookings become a sequence ``user_type_1, item_type_1,
user_type_2, item_type_2, ...`` in time order, where a user's type at a booking is computed from
the bookings *before* it (point in time). The same skip-gram trainer embeds both kinds in one
space, so ``cos(user_type, item_type)`` is a long-term-interest ranking feature.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from funnel._checks import check_is_fitted, non_negative_int, positive_int, validate_params
from funnel.config import from_mapping, to_mapping
from funnel.embed.corpus import build_corpus
from funnel.embed.trainer import EpochCallback, train_skipgram
from funnel.exceptions import ArtifactError, ConfigError
from funnel.vectors import load_vectors, save_vectors

ITEM_FIELDS = ("market", "category", "brand", "price_band")
USER_FIELDS = ("market", "category", "price_band", "n_bookings")
NEW_USER = "user_type:new"


@dataclass(frozen=True)
class TypeRules:
    """Which attributes define a type (a typo in a field name is a ``ConfigError``).

    ``item_fields``: any of market, category, brand, price_band. ``user_fields``: any of market,
    category, price_band (the most frequent among the user's earlier bookings), n_bookings
    (bucketed by ``booking_edges``). ``price_bands``: price quantile bands computed per market.
    """

    item_fields: tuple[str, ...] = ("market", "category", "price_band")
    user_fields: tuple[str, ...] = ("market", "price_band", "n_bookings")
    price_bands: int = 3
    booking_edges: tuple[int, ...] = field(default=(1, 3, 10))

    def check(self) -> None:
        for name, allowed, got in (("item_fields", ITEM_FIELDS, self.item_fields),
                                   ("user_fields", USER_FIELDS, self.user_fields)):
            bad = [f for f in got if f not in allowed]
            if bad or not got:
                raise ConfigError(
                    f"TypeRules.{name}: got {list(got)}; expected a non-empty subset of "
                    f"{list(allowed)}"
                )
        if self.price_bands < 1:
            raise ConfigError(f"TypeRules.price_bands: got {self.price_bands}; expected >= 1")


class ItemTyper:
    """Maps catalog rows to item-type ids; price bands are per-market price quantiles."""

    def __init__(self, rules: TypeRules, price_edges: Mapping[str, list[float]]) -> None:
        self.rules = rules
        self.price_edges = dict(price_edges)

    @classmethod
    def fit(cls, rules: TypeRules, items: pa.Table) -> ItemTyper:
        markets = items.column("market").to_pylist()
        prices = items.column("price").to_pylist()
        by_market: dict[str, list[float]] = {}
        for m, p in zip(markets, prices, strict=True):
            if p is not None and np.isfinite(p):
                by_market.setdefault(str(m), []).append(float(p))
        qs = np.linspace(0, 1, rules.price_bands + 1)[1:-1]
        edges = {m: [float(x) for x in np.quantile(v, qs)] for m, v in by_market.items()}
        return cls(rules, edges)

    def price_band(self, market: str | None, price: float | None) -> int | None:
        edges = self.price_edges.get(str(market))
        if edges is None or price is None or not np.isfinite(price):
            return None
        return int(np.searchsorted(edges, price, side="left"))

    def attributes(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out = {f: row.get(f) for f in ("market", "category", "brand")}
        out["price_band"] = self.price_band(row.get("market"), row.get("price"))
        return out

    def type_of(self, row: Mapping[str, Any]) -> str:
        """``item_type:market=..|category=..|price_band=..`` for a catalog row."""
        return self.type_from_attributes(self.attributes(row))

    def type_from_attributes(self, attrs: Mapping[str, Any]) -> str:
        """The item type of already computed :meth:`attributes`."""
        return "item_type:" + "|".join(f"{f}={attrs.get(f)}" for f in self.rules.item_fields)


def user_type_of(rules: TypeRules, history: Sequence[Mapping[str, Any]]) -> str:
    """User type from earlier bookings' item attributes (each with market/category/price_band)."""
    if not history:
        return NEW_USER
    parts = []
    for f in rules.user_fields:
        if f == "n_bookings":
            value: Any = int(np.searchsorted(rules.booking_edges, len(history), side="right"))
        else:
            seen = Counter(str(h.get(f)) for h in history)
            value = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        parts.append(f"{f}={value}")
    return "user_type:" + "|".join(parts)


def booking_sequences(
    bookings: pa.Table, items: pa.Table, typer: ItemTyper
) -> list[list[str]]:
    """Per user, in time order: ``[user_type, item_type, user_type, item_type, ...]``."""
    catalog = {r["item_id"]: r for r in items.to_pylist()}
    order = sorted(
        range(bookings.num_rows),
        key=lambda i: (bookings.column("user_id")[i].as_py(), bookings.column("ts")[i].as_py(), i),
    )
    users = bookings.column("user_id").to_pylist()
    booked = bookings.column("item_id").to_pylist()
    sequences: dict[str, list[str]] = {}
    history: dict[str, list[dict[str, Any]]] = {}
    for i in order:
        row = catalog.get(booked[i])
        if row is None:
            continue
        past = history.setdefault(users[i], [])
        seq = sequences.setdefault(users[i], [])
        seq.append(user_type_of(typer.rules, past))
        seq.append(typer.type_of(row))
        past.append(typer.attributes(row))
    return [sequences[u] for u in sorted(sequences)]


class TypeEmbeddings:
    """User-type and item-type vectors in one space, trained on booking sequences.

    Example
    -------
    >>> emb = TypeEmbeddings(dim=8).fit(bookings, items)            # doctest: +SKIP
    >>> emb.similarity("user_type:new", emb.item_type(items.to_pylist()[0]))  # doctest: +SKIP
    """

    def __init__(
        self,
        dim: int = 16,
        *,
        rules: TypeRules | None = None,
        window: int = 4,
        negatives: int = 5,
        epochs: int = 20,
        learning_rate: float = 0.025,
        min_count: int = 1,
        n_threads: int = 1,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.rules = rules
        self.window = window
        self.negatives = negatives
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.min_count = min_count
        self.n_threads = n_threads
        self.seed = seed

    def _params(self) -> dict[str, Any]:
        return {"dim": self.dim, "window": self.window, "negatives": self.negatives,
                "epochs": self.epochs, "learning_rate": self.learning_rate,
                "min_count": self.min_count, "n_threads": self.n_threads, "seed": self.seed}

    def fit(
        self, bookings: pa.Table, items: pa.Table, *, callback: EpochCallback | None = None
    ) -> TypeEmbeddings:
        """Train from booking events (user_id, ts, item_id) and the catalog (items table)."""
        validate_params(self._params(), {
            "dim": (positive_int, "a positive int"), "window": (positive_int, "a positive int"),
            "negatives": (positive_int, "a positive int"),
            "epochs": (positive_int, "a positive int"),
            "learning_rate": (lambda v: v > 0, "a float > 0"),
            "min_count": (positive_int, "a positive int"),
            "n_threads": (positive_int, "a positive int"),
            "seed": (non_negative_int, "an int >= 0"),
        })
        rules = self.rules or TypeRules()
        rules.check()
        for name, table, cols in (("bookings", bookings, ("user_id", "ts", "item_id")),
                                  ("items", items, ("item_id", "market", "price"))):
            missing = [c for c in cols if c not in table.column_names]
            if missing:
                raise ValueError(f"The '{name}' table lacks column(s) {missing}; "
                                 f"got {table.column_names}")
        typer = ItemTyper.fit(rules, items)
        corpus = build_corpus(
            booking_sequences(bookings, items, typer), min_count=self.min_count,
            min_session_length=2, use_booked=False,
        )
        w_in, _ = train_skipgram(
            corpus, dim=self.dim, window=self.window, negatives=self.negatives,
            market_negatives=0, use_booked=False, epochs=self.epochs,
            learning_rate=float(self.learning_rate), min_learning_rate=1e-4, sample=0.0,
            n_threads=self.n_threads, seed=self.seed, callback=callback,
        )
        norms = np.maximum(np.linalg.norm(w_in, axis=1, keepdims=True), 1e-12)
        self.rules_ = rules
        self.typer_ = typer
        self.vocab_ = list(corpus.vocab)
        self.vectors_ = (w_in / norms).astype(np.float32)
        self.index_ = {t: i for i, t in enumerate(self.vocab_)}
        return self

    def item_type(self, row: Mapping[str, Any]) -> str:
        check_is_fitted(self, "vectors_")
        return self.typer_.type_of(row)

    def user_type(self, booked_items: Sequence[Mapping[str, Any]]) -> str:
        """The type of a user whose earlier bookings are these catalog rows."""
        check_is_fitted(self, "vectors_")
        return user_type_of(self.rules_, [self.typer_.attributes(r) for r in booked_items])

    def similarity(self, user_type: str, item_type: str) -> float:
        """Ranking feature: cosine of the two type vectors; 0.0 when either type is unseen."""
        check_is_fitted(self, "vectors_")
        u, i = self.index_.get(user_type), self.index_.get(item_type)
        if u is None or i is None:
            return 0.0
        return float(self.vectors_[u] @ self.vectors_[i])

    def similarities(self, user_types: Sequence[str], item_types: Sequence[str]) -> np.ndarray:
        """Vectorized :meth:`similarity` over aligned lists (one feature column)."""
        if len(user_types) != len(item_types):
            raise ValueError(f"user_types and item_types must align; got {len(user_types)} and "
                             f"{len(item_types)}")
        return np.array([self.similarity(u, i) for u, i in zip(user_types, item_types,
                                                                 strict=True)], dtype=np.float32)

    def save(self, directory: Path | str) -> Path:
        """Write the ``type`` vector table plus ``type_meta.json`` (rules, price edges)."""
        check_is_fitted(self, "vectors_")
        directory = Path(directory)
        save_vectors(directory, "type", self.vocab_, self.vectors_)
        meta = {"class": "TypeEmbeddings", "params": self._params(),
                "rules": to_mapping(self.rules_), "price_edges": self.typer_.price_edges}
        (directory / "type_meta.json").write_text(json.dumps(meta))
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> TypeEmbeddings:
        meta, rules = _read_type_meta(Path(directory))
        model = cls(rules=rules, **meta["params"])
        table = load_vectors(Path(directory), "type")
        model.rules_ = rules
        model.typer_ = ItemTyper(rules, meta["price_edges"])
        model.vocab_ = table.ids
        model.vectors_ = table.vectors
        model.index_ = table.index()
        return model


def _read_type_meta(directory: Path) -> tuple[dict[str, Any], TypeRules]:
    """``type_meta.json`` of a saved type table and its rules; ArtifactError when missing."""
    meta_path = directory / "type_meta.json"
    if not meta_path.exists():
        raise ArtifactError(f"{meta_path}: missing; rebuild with 'funnel embed'")
    meta = json.loads(meta_path.read_text())
    return meta, from_mapping(TypeRules, meta["rules"], where=str(meta_path))


@dataclass
class TypeLookup:
    """What ranking and serving need for ``cos(user_type, item_type)``, without training code.

    Built from the saved ``type`` table + ``type_meta.json`` (rules, per-market price edges) and
    the catalog rows, so an item's type and the attributes a user type is computed from are the
    embed stage's own functions. The user type comes from the user's booked item ids *as of the
    moment* (``RecentActions.bookings``), so training replay and the server compute it alike.
    """

    rules: TypeRules
    item_attrs: dict[str, dict[str, Any]]
    item_types: dict[str, str]
    vectors: dict[str, np.ndarray]
    """Type id -> L2-normalized vector."""
    _known: tuple[Sequence[str], np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False)
    """Set on a :meth:`for_items` view: one request's candidate ids and their type rows."""

    @classmethod
    def from_parts(
        cls, rules: TypeRules, price_edges: Mapping[str, list[float]],
        catalog: Sequence[Mapping[str, Any]], type_ids: Sequence[str], type_vectors: np.ndarray,
    ) -> TypeLookup:
        typer = ItemTyper(rules, price_edges)
        v = np.asarray(type_vectors, dtype=np.float32)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        attrs = {str(r["item_id"]): typer.attributes(r) for r in catalog}
        types = {i: typer.type_from_attributes(a) for i, a in attrs.items()}
        return cls(rules, attrs, types, {t: v[k] for k, t in enumerate(type_ids)})

    @classmethod
    def load(cls, directory: Path | str, catalog: Sequence[Mapping[str, Any]]) -> TypeLookup:
        """Read ``type_vectors.npy``/``type_ids.json``/``type_meta.json`` from ``directory``;
        ``catalog`` rows carry item_id, market, category, brand, price."""
        directory = Path(directory)
        meta, rules = _read_type_meta(directory)
        table = load_vectors(directory, "type")
        return cls.from_parts(rules, meta["price_edges"], catalog, table.ids, table.vectors)

    @classmethod
    def from_model(
        cls, model: TypeEmbeddings, catalog: Sequence[Mapping[str, Any]]
    ) -> TypeLookup:
        check_is_fitted(model, "vectors_")
        return cls.from_parts(model.rules_, model.typer_.price_edges, catalog, model.vocab_,
                              model.vectors_)

    def user_type(self, booked_item_ids: Sequence[str]) -> str:
        """The type of a user whose earlier bookings are these items (unknown ids skipped)."""
        history = [self.item_attrs[i] for i in booked_item_ids if i in self.item_attrs]
        return user_type_of(self.rules, history)

    def __post_init__(self) -> None:
        names = list(self.vectors)
        dim = len(next(iter(self.vectors.values()))) if names else 0
        self._matrix = np.zeros((len(names) + 1, dim), dtype=np.float32)  # last row: unseen
        if names:
            self._matrix[:-1] = np.stack([self.vectors[t] for t in names])
        row = {t: k for k, t in enumerate(names)}
        self._item_row = {i: row.get(t, len(names)) for i, t in self.item_types.items()}

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Row of each item's type in the type matrix (items of unseen types, and unknown
        items, get the last row: a zero vector)."""
        unseen = len(self._matrix) - 1
        return np.fromiter(map(self._item_row.get, item_ids, repeat(unseen, len(item_ids))),
                           dtype=np.int64, count=len(item_ids))

    def for_items(self, item_ids: Sequence[str], rows: np.ndarray) -> TypeLookup:
        """This lookup, told the :meth:`rows` of one request's candidates (``item_ids``, that
        very sequence): a server maps its catalog to type rows once at load, and then scores
        a request's candidates without a hash probe into a million ids per candidate."""
        rows = np.asarray(rows)
        if rows.shape != (len(item_ids),) or rows.dtype.kind not in "iu" or (
            len(rows) and (rows.min() < 0 or rows.max() >= len(self._matrix))
        ):
            raise ValueError(
                f"'rows' must be {len(item_ids)} type rows in [0, {len(self._matrix)}) (one "
                f"per item id); got shape {rows.shape}, dtype {rows.dtype}"
            )
        view = object.__new__(type(self))  # a shallow copy, without copy.copy's protocol
        view.__dict__.update(self.__dict__)
        view._known = (item_ids, rows)
        return view

    def similarities(self, user_type: str, item_ids: Sequence[str]) -> np.ndarray:
        """``cos(user_type, item_type)`` per item, ``(n,) float32``; 0 when a type is unseen."""
        u = self.vectors.get(user_type)
        if u is None or not len(item_ids):
            return np.zeros(len(item_ids), dtype=np.float32)
        known = self._known
        rows = known[1] if known is not None and known[0] is item_ids else self.rows(item_ids)
        return (self._matrix[rows] @ u).astype(np.float32)
