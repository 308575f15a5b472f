"""Item and query embeddings from click sessions (Grbovic & Cheng, KDD 2018, sec. 3.1).

``ItemEmbeddings`` is the paper's listing embedding: skip-gram over click sessions with the
booked item as a global context and same-market negatives. ``QueryEmbeddings`` runs the same
trainer over the ``queries`` column (used by query suggestion). Both save to the shared vector
table format (``funnel.vectors``) plus JSON; never pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pyarrow as pa

from funnel._checks import (
    check_is_fitted,
    non_negative_int,
    positive_float,
    positive_int,
    validate_params,
)
from funnel.embed.corpus import (
    Corpus,
    as_sessions_table,
    build_corpus,
    normalize_query,
    query_sequence,
)
from funnel.embed.trainer import EpochCallback, train_skipgram
from funnel.exceptions import ArtifactError
from funnel.vectors import load_vectors, save_vectors


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _normalize_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.maximum(norms, 1e-12)).astype(np.float32)


_PARAM_TABLE = {
    "dim": (positive_int, "a positive int"),
    "window": (positive_int, "a positive int"),
    "negatives": (non_negative_int, "an int >= 0"),
    "market_negatives": (non_negative_int, "an int >= 0"),
    "booked_context": (_is_bool, "a bool"),
    "epochs": (positive_int, "a positive int"),
    "learning_rate": (positive_float, "a float > 0"),
    "min_learning_rate": (lambda v: isinstance(v, int | float) and v >= 0, "a float >= 0"),
    "sample": (lambda v: isinstance(v, int | float) and 0 <= v < 1, "a float in [0, 1)"),
    "min_count": (positive_int, "a positive int"),
    "min_dwell_ms": (non_negative_int, "an int >= 0 (milliseconds)"),
    "min_session_length": (positive_int, "a positive int"),
    "n_threads": (positive_int, "a positive int"),
    "seed": (non_negative_int, "an int >= 0"),
}


class _SessionEmbeddings:
    """Shared estimator body: hyperparameters, fit on a corpus, lookups, save/load."""

    _column: ClassVar[str] = "items"
    _table: ClassVar[str] = "item"
    _kind: ClassVar[str] = "item"

    def __init__(
        self,
        dim: int = 32,
        *,
        window: int = 5,
        negatives: int = 5,
        market_negatives: int = 5,
        booked_context: bool = True,
        epochs: int = 5,
        learning_rate: float = 0.025,
        min_learning_rate: float = 0.0001,
        sample: float = 0.001,
        min_count: int = 1,
        min_dwell_ms: int = 2000,
        min_session_length: int = 2,
        n_threads: int = 1,
        seed: int = 0,
    ) -> None:
        self.dim = dim
        self.window = window
        self.negatives = negatives
        self.market_negatives = market_negatives
        self.booked_context = booked_context
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.min_learning_rate = min_learning_rate
        self.sample = sample
        self.min_count = min_count
        self.min_dwell_ms = min_dwell_ms
        self.min_session_length = min_session_length
        self.n_threads = n_threads
        self.seed = seed

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PARAM_TABLE}

    # ---- training -------------------------------------------------------------------------
    def _corpus(self, sessions: Any, items: pa.Table | None) -> Corpus:
        raise NotImplementedError

    def fit(
        self, sessions: Any, items: pa.Table | None = None, *, callback: EpochCallback | None = None
    ) -> Self:
        """Train on ``sessions`` (a sessions table, DuckDB relation, or list of token lists)."""
        validate_params(self.get_params(), _PARAM_TABLE)
        corpus = self._corpus(sessions, items)
        w_in, _ = train_skipgram(
            corpus, dim=self.dim, window=self.window, negatives=self.negatives,
            market_negatives=self.market_negatives if self._column == "items" else 0,
            use_booked=self.booked_context and self._column == "items", epochs=self.epochs,
            learning_rate=float(self.learning_rate),
            min_learning_rate=float(self.min_learning_rate), sample=float(self.sample),
            n_threads=self.n_threads, seed=self.seed, callback=callback,
        )
        return self._set_fitted(corpus, w_in, items)

    def _set_fitted(self, corpus: Corpus, w_in: np.ndarray, items: pa.Table | None) -> Self:
        """The fitted state from a corpus and its trained input vectors (one or many processes)."""
        self.vocab_ = list(corpus.vocab)
        self.vectors_ = _normalize_rows(w_in)
        self.counts_ = corpus.counts.copy()
        self.markets_ = [corpus.markets[m] if m >= 0 else None for m in corpus.word_market]
        self.n_sessions_ = corpus.n_sessions
        self.n_tokens_ = corpus.n_tokens
        self.index_ = {tok: i for i, tok in enumerate(self.vocab_)}
        self._after_fit(items)
        return self

    def _after_fit(self, items: pa.Table | None) -> None:
        """Hook for learned state beyond the vectors."""

    # ---- queries --------------------------------------------------------------------------
    def _key(self, token: str) -> str:
        return token

    def __contains__(self, token: object) -> bool:
        index = getattr(self, "index_", {})
        return isinstance(token, str) and self._key(token) in index

    def vector(self, token: str) -> np.ndarray:
        """The unit-length vector of ``token``; KeyError naming it when it was not trained."""
        check_is_fitted(self, "vectors_")
        key = self._key(token)
        row = self.index_.get(key)
        if row is None:
            raise KeyError(
                f"{self._kind} {token!r} is not in the vocabulary of {len(self.vocab_)} "
                f"{self._kind}s (too rare, filtered out, or never seen)"
            )
        return self.vectors_[row].copy()

    def vectors(self, tokens: list[str]) -> np.ndarray:
        """Batch :meth:`vector`: an (n, dim) array, row i for ``tokens[i]``."""
        check_is_fitted(self, "vectors_")
        if isinstance(tokens, str):
            raise TypeError("'tokens' must be a list of strings; use vector() for one token")
        return np.stack([self.vector(t) for t in tokens]) if len(tokens) else np.zeros(
            (0, self.vectors_.shape[1]), dtype=np.float32)

    def most_similar(
        self, item: str | np.ndarray, k: int = 10, market: str | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` most cosine-similar tokens (the query itself excluded), best first.

        ``item`` is a token or a vector; ``market`` restricts results to that market.
        """
        check_is_fitted(self, "vectors_")
        if not positive_int(k):
            raise ValueError(f"The 'k' parameter must be a positive int. Got {k!r} instead.")
        exclude = -1
        if isinstance(item, str):
            exclude = self.index_.get(self._key(item), -1)
            query = self.vector(item)
        else:
            query = np.asarray(item, dtype=np.float32)
            if query.shape != (self.vectors_.shape[1],):
                raise ValueError(
                    f"The 'item' vector must have shape ({self.vectors_.shape[1]},); "
                    f"got {query.shape}"
                )
        scores = self.vectors_ @ query
        if exclude >= 0:
            scores[exclude] = -np.inf
        if market is not None:
            allowed = np.asarray(self.markets_, dtype=object) == market
            if not allowed.any():
                known = sorted({m for m in self.markets_ if m is not None})
                raise ValueError(
                    f"The 'market' parameter must be a known market; got {market!r}, known: "
                    f"{known[:20]}"
                )
            scores = np.where(allowed, scores, -np.inf)
        n_valid = int(np.isfinite(scores).sum())
        k = min(k, n_valid)
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [(self.vocab_[i], float(scores[i])) for i in top]

    # ---- persistence ----------------------------------------------------------------------
    def _extra_meta(self) -> dict[str, Any]:
        return {}

    def save(self, directory: Path | str) -> Path:
        """Write ``<table>_vectors.npy``, ``<table>_ids.json`` and ``<table>_meta.json``."""
        check_is_fitted(self, "vectors_")
        directory = Path(directory)
        save_vectors(directory, self._table, self.vocab_, self.vectors_)
        meta = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "counts": self.counts_.tolist(),
            "markets": self.markets_,
            "n_sessions": self.n_sessions_,
            "n_tokens": self.n_tokens_,
            **self._extra_meta(),
        }
        (directory / f"{self._table}_meta.json").write_text(json.dumps(meta))
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> Self:
        """Rebuild a fitted estimator from :meth:`save` output (unknown params are refused)."""
        directory = Path(directory)
        meta_path = directory / f"{cls._table}_meta.json"
        if not meta_path.exists():
            raise ArtifactError(f"{meta_path}: missing; rebuild with 'funnel embed'")
        meta = json.loads(meta_path.read_text())
        if meta.get("class") != cls.__name__:
            raise ArtifactError(f"{meta_path}: holds a {meta.get('class')!r}, not {cls.__name__}")
        params = meta["params"]
        unknown = sorted(set(params) - set(_PARAM_TABLE))
        if unknown:
            raise ArtifactError(f"{meta_path}: unknown parameter(s) {unknown}")
        model = cls(**params)
        table = load_vectors(directory, cls._table)
        model.vocab_ = table.ids
        model.vectors_ = table.vectors
        model.counts_ = np.asarray(meta["counts"], dtype=np.int64)
        model.markets_ = list(meta["markets"])
        model.n_sessions_ = int(meta["n_sessions"])
        model.n_tokens_ = int(meta["n_tokens"])
        model.index_ = table.index()
        model._load_extra(meta)
        return model

    def _load_extra(self, meta: Mapping[str, Any]) -> None:
        """Hook: restore learned state saved by :meth:`_extra_meta`."""


class ItemEmbeddings(_SessionEmbeddings):
    """Listing embeddings of Grbovic & Cheng (KDD 2018, sec. 3.1), trained with numba.

    Parameters
    ----------
    dim : embedding dimension.
    window : maximum skip-gram window (randomly shrunk per centre word, as word2vec).
    negatives : global negatives per positive pair (unigram^0.75).
    market_negatives : extra negatives from the centre item's own market (paper eq. 4); 0 = off.
    booked_context : the booked item is a context of every click of its session (paper eq. 3).
    epochs, learning_rate, min_learning_rate : linear learning-rate decay over all epochs.
    sample : frequency subsampling threshold (0 = off).
    min_count : items seen fewer times are dropped.
    min_dwell_ms : clicks with a shorter dwell are accidental and dropped (0 = keep all).
    min_session_length : sessions with fewer remaining clicks are dropped.
    n_threads : Hogwild threads; with 1 the result is bit-identical for a given ``seed``.

    Example
    -------
    >>> from funnel.embed.simulate import SessionSimConfig, simulate_sessions
    >>> sessions, items = simulate_sessions(SessionSimConfig(n_sessions=300))
    >>> emb = ItemEmbeddings(dim=8, epochs=2).fit(sessions, items)
    >>> len(emb.most_similar(emb.vocab_[0], k=3, market="m0"))
    3
    """

    distributed_: dict[str, float]
    """Set only when trained by ``funnel.distributed.train_embed.fit_distributed``: world size,
    syncs per epoch, seconds training and syncing, this process's sessions."""

    def _corpus(self, sessions: Any, items: pa.Table | None) -> Corpus:
        markets = None
        if items is not None:
            if not isinstance(items, pa.Table) or not {"item_id", "market"} <= set(
                items.column_names
            ):
                got = items.column_names if isinstance(items, pa.Table) else type(items).__name__
                raise ValueError(
                    "The 'items' argument must be a pyarrow Table with 'item_id' and 'market' "
                    f"columns (category and price optional); got {got}"
                )
            markets = dict(zip(items.column("item_id").to_pylist(),
                               items.column("market").to_pylist(), strict=True))
        return build_corpus(
            sessions, column="items", min_count=self.min_count, min_dwell_ms=self.min_dwell_ms,
            min_session_length=self.min_session_length, use_booked=self.booked_context,
            item_markets=markets,
        )

    def _after_fit(self, items: pa.Table | None) -> None:
        categories: list[str | None] = [None] * len(self.vocab_)
        prices: list[float | None] = [None] * len(self.vocab_)
        if items is not None:
            cols = items.column_names
            ids = items.column("item_id").to_pylist()
            cat = items.column("category").to_pylist() if "category" in cols else [None] * len(ids)
            price = items.column("price").to_pylist() if "price" in cols else [None] * len(ids)
            for item_id, c, p in zip(ids, cat, price, strict=True):
                row = self.index_.get(item_id)
                if row is not None:
                    categories[row] = c
                    prices[row] = None if p is None or not math.isfinite(p) else float(p)
        self.categories_ = categories
        self.prices_ = prices

    def _extra_meta(self) -> dict[str, Any]:
        return {"categories": self.categories_, "prices": self.prices_}

    def _load_extra(self, meta: Mapping[str, Any]) -> None:
        self.categories_ = list(meta.get("categories", [None] * len(self.vocab_)))
        self.prices_ = list(meta.get("prices", [None] * len(self.vocab_)))

    def cold_start(
        self, *, market: str, price: float | None = None, category: str | None = None, k: int = 3
    ) -> np.ndarray:
        """Vector for an unseen item: mean of its ``k`` nearest known items by attributes.

        Paper sec. 3.1 ("cold start"): the 3 nearest listings of the same market, type and
        price bucket. We keep the same market and category (when given), and take the ``k``
        items closest in log-price; the mean is re-normalized to unit length.
        """
        check_is_fitted(self, "vectors_")
        rows = self._attribute_index().nearest(
            market=market, category=category, price=price, k=k
        )
        if not rows:
            known = sorted({m for m in self.markets_ if m is not None})
            raise KeyError(
                f"cold start: no known item in market {market!r}"
                + (f" and category {category!r}" if category is not None else "")
                + f"; known markets: {known[:20]}"
            )
        mean = self.vectors_[rows].mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


    def _attribute_index(self) -> Any:
        """Trained items only (count > 0): cold-start vectors are never built from others."""
        from funnel.embed.cold_start import AttributeIndex

        trained = [m if n > 0 else None for m, n in zip(self.markets_, self.counts_, strict=True)]
        return AttributeIndex(trained, self.categories_, self.prices_)

    def fill_cold_start(self, items: pa.Table, k: int = 3) -> list[str]:
        """Give every catalog item without sessions its :meth:`cold_start` vector.

        The new rows are appended to ``vocab_``/``vectors_`` with a count of 0, so they are
        searchable and saved like trained items. Returns the ids added (items whose market has
        no trained item are skipped).
        """
        check_is_fitted(self, "vectors_")
        index = self._attribute_index()
        cols = items.column_names
        ids = items.column("item_id").to_pylist()
        markets = items.column("market").to_pylist()
        cats = items.column("category").to_pylist() if "category" in cols else [None] * len(ids)
        prices = items.column("price").to_pylist() if "price" in cols else [None] * len(ids)
        added: list[str] = []
        seen: set[str] = set()  # a set: a list made this quadratic at 1M items
        new_vectors: list[np.ndarray] = []
        for item_id, m, c, p in zip(ids, markets, cats, prices, strict=True):
            if item_id in self.index_ or item_id in seen or m is None:
                continue
            seen.add(item_id)
            rows = index.nearest(market=m, category=c, price=p, k=k)
            if not rows:
                continue
            mean = self.vectors_[rows].mean(axis=0)
            new_vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            added.append(item_id)
            self.markets_.append(m)
            self.categories_.append(c)
            self.prices_.append(None if p is None or not math.isfinite(p) else float(p))
        if added:
            start = len(self.vocab_)
            self.vocab_.extend(added)
            self.vectors_ = np.vstack([self.vectors_, np.asarray(new_vectors, np.float32)])
            self.counts_ = np.concatenate([self.counts_, np.zeros(len(added), np.int64)])
            self.index_.update({t: start + i for i, t in enumerate(added)})
        return added


class QueryEmbeddings(_SessionEmbeddings):
    """Search-query embeddings: the same trainer over each session's query sequence.

    Query ids are normalized text (lower case, single spaces); ``vector`` and ``most_similar``
    normalize their argument the same way. Market negatives and booked context do not apply.
    Subsampling is off by default: query sequences are short and dominated by head queries, so
    word2vec's ``sample=1e-3`` drops most pairs (measured: neighbour category share 0.15 with
    it vs 1.0 without on the simulator's 20-query log).
    """

    _column = "queries"
    _table = "query"
    _kind = "query"

    def __init__(
        self,
        dim: int = 32,
        *,
        window: int = 3,
        negatives: int = 5,
        market_negatives: int = 0,
        booked_context: bool = False,
        epochs: int = 10,
        learning_rate: float = 0.025,
        min_learning_rate: float = 0.0001,
        sample: float = 0.0,
        min_count: int = 1,
        min_dwell_ms: int = 0,
        min_session_length: int = 2,
        n_threads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dim, window=window, negatives=negatives, market_negatives=market_negatives,
            booked_context=booked_context, epochs=epochs, learning_rate=learning_rate,
            min_learning_rate=min_learning_rate, sample=sample, min_count=min_count,
            min_dwell_ms=min_dwell_ms, min_session_length=min_session_length,
            n_threads=n_threads, seed=seed,
        )

    def _key(self, token: str) -> str:
        return normalize_query(token)

    def _corpus(self, sessions: Any, items: pa.Table | None) -> Corpus:
        table = as_sessions_table(sessions, "queries")
        deduped = [query_sequence(qs) for qs in table.column("queries").to_pylist()]
        return build_corpus(
            pa.table({"queries": pa.array(deduped, type=pa.list_(pa.string()))}),
            column="queries", min_count=self.min_count, min_dwell_ms=0,
            min_session_length=self.min_session_length, use_booked=False,
        )
