"""The query-suggestion model the server uses: completion, related, hint, refinements.

``QuerySuggester(config).fit(con)`` mines the event store; ``save``/``load`` write JSON + npz
and LightGBM's text model (no pickle) into the artifact's ``suggest/`` component. Completion is
an :class:`AutoCompleter`: exact index + rare-prefix suffixes + session context in a learned
order trained on the last ``order_fraction`` of the log against an index of the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from funnel._checks import check_is_fitted, non_negative_int, positive_int, validate_params
from funnel.config import from_mapping, to_mapping
from funnel.exceptions import ArtifactError
from funnel.suggest.autocomplete import AutoCompleter, IndexData, OrderExample
from funnel.suggest.completion import QueryCompleter
from funnel.suggest.context import SessionContext
from funnel.suggest.hints import conversion_score, hints_by_category, pick_hints
from funnel.suggest.learned_order import LearnedOrder
from funnel.suggest.mining import (
    MiningConfig,
    QueryLog,
    Searches,
    load_searches,
    mine_queries,
    query_sessions,
    user_interests,
)
from funnel.suggest.normalize import normalize_query
from funnel.suggest.refine import Catalog, refinements
from funnel.suggest.related import (
    context_filter,
    cooccurrence,
    embedding_neighbours,
    merge_related,
    query_categories,
    query_markets,
    token_neighbours,
)
from funnel.vectors import VectorTable

_FORMAT = "funnel.suggest/2"


@dataclass(frozen=True)
class SuggestConfig:
    """The ``[suggest]`` table of funnel.toml."""

    half_life_days: float = 30.0
    min_count: int = 2
    min_users: int = 1
    attribution_minutes: float = 30.0
    session_gap_minutes: float = 30.0
    smoothing: float = 20.0
    booking_weight: float = 3.0
    block_terms: tuple[str, ...] = ()
    candidates: int = 16
    block_size: int = 32
    typo_min_len: int = 4
    typo_below: int = 1
    typo_penalty: float = 0.3
    pinyin: bool = True
    category_lift: float = 2.0
    market_lift: float = 0.5
    related_top: int = 10
    related_window: int = 3
    embedding_weight: float = 0.5
    token_weight: float = 1.0
    hints_per_category: int = 10
    refine_top_queries: int = 5000
    refinements_per_query: int = 8
    holdout_fraction: float = 0.1
    eval_searches: int = 2000
    suffix_min_count: int = 3
    learned_order: bool = True
    order_fraction: float = 0.2
    order_searches: int = 3000
    order_trees: int = 150

    def __post_init__(self) -> None:
        non_negative = (lambda v: isinstance(v, int | float) and not isinstance(v, bool)
                        and v >= 0, "a float >= 0")
        validate_params(
            vars(self),
            {
                "related_top": (positive_int, "a positive int"),
                "related_window": (positive_int, "a positive int"),
                "hints_per_category": (positive_int, "a positive int"),
                "refine_top_queries": (non_negative_int, "an int >= 0"),
                "refinements_per_query": (positive_int, "a positive int"),
                "eval_searches": (positive_int, "a positive int"),
                "holdout_fraction": (lambda v: isinstance(v, float) and 0.0 < v < 1.0,
                                     "a float in (0, 1)"),
                "embedding_weight": non_negative,
                "token_weight": non_negative,
                "suffix_min_count": (positive_int, "a positive int"),
                "learned_order": (lambda v: isinstance(v, bool), "a bool"),
                "order_fraction": (lambda v: isinstance(v, float) and 0.0 < v < 1.0,
                                   "a float in (0, 1)"),
                "order_searches": (positive_int, "a positive int"),
                "order_trees": (positive_int, "a positive int"),
            },
        )
        self.mining()  # validates the mining fields now, not at fit time
        self.completer().validate()

    def mining(self) -> MiningConfig:
        names = {f.name for f in fields(MiningConfig)}
        return MiningConfig(**{n: getattr(self, n) for n in names})

    def completer(self) -> QueryCompleter:
        names = ("candidates", "block_size", "typo_min_len", "typo_below", "typo_penalty", "pinyin",
                 "category_lift", "market_lift")
        return QueryCompleter(**{n: getattr(self, n) for n in names})

    def autocompleter(self) -> AutoCompleter:
        return AutoCompleter(completer=self.completer(), suffix_min_count=self.suffix_min_count,
                             order=LearnedOrder(n_estimators=self.order_trees),
                             block_terms=self.block_terms)


def _query_categories(log: QueryLog, catalog: Catalog) -> list[str | None]:
    """Each query's dominant category among its clicked items (None without clicks)."""
    out: list[str | None] = []
    for clicked in log.clicked_items:
        cats: Counter[str] = Counter()
        for item, n in clicked.items():
            cat = catalog.attrs.get(item, {}).get("category")
            if cat is not None:
                cats[cat] += n
        out.append(cats.most_common(1)[0][0] if cats else None)
    return out


def _index_data(searches: Searches, log: QueryLog, qcat: list[str | None]) -> IndexData:
    """What the completion parts are built from: mined queries and every logged text."""
    texts, counts = np.unique(searches.text.astype(str), return_counts=True)
    return IndexData(log.queries, log.count.astype(np.float64), log.score.astype(np.float64),
                     log.decayed / np.maximum(log.count, 1), qcat, log.market,
                     [str(t) for t in texts], counts.astype(np.float64))


def _fit_autocomplete(
    con: duckdb.DuckDBPyConnection, cfg: SuggestConfig, searches: Searches, catalog: Catalog,
    full: IndexData,
) -> AutoCompleter:
    """Index the log before the last ``order_fraction`` of its searches, learn the order on
    those later searches (their session's previous query, the user's profile then), then
    index the whole log. Too small a log: no learned order (the exact index's order)."""
    auto = cfg.autocompleter()
    if cfg.learned_order and len(searches) >= 50:
        split = int(np.quantile(searches.ts_ms, 1.0 - cfg.order_fraction))
        early = np.flatnonzero(searches.ts_ms < split)
        early_s = searches.take(early)
        log = mine_queries(early_s, cfg.mining()) if len(early) else None
        if log is not None and len(log):
            auto.fit_index(_index_data(early_s, log, _query_categories(log, catalog)))
            cats, mkts = user_interests(con, half_life_days=cfg.half_life_days, until_ms=split)
            prev = searches.previous_queries(cfg.session_gap_minutes)
            late = np.flatnonzero(searches.ts_ms >= split)
            if len(late) > cfg.order_searches:
                late = np.sort(np.random.default_rng(0).choice(late, cfg.order_searches,
                                                               replace=False))
            auto.fit_order([
                OrderExample(str(searches.text[r]), SessionContext(
                    prev[r], tuple(cats.get(str(searches.user[r]), ())),
                    mkts.get(str(searches.user[r])))) for r in late.tolist()])
    return auto.fit_index(full)


class QuerySuggester:
    """Completion, related queries, hint query and refinements mined from one event store.

    Example
    -------
    >>> model = QuerySuggester(SuggestConfig()).fit(con)      # doctest: +SKIP
    >>> model.complete("nik", user_id="u1")                     # doctest: +SKIP
    (['nike air', 'nike shoes', ...], array([...]))
    """

    def __init__(self, config: SuggestConfig | None = None) -> None:
        self.config = config

    def fit(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        until_ms: int | None = None,
        query_vectors: VectorTable | None = None,
    ) -> QuerySuggester:
        """Mine the ``events``/``items`` tables (events before ``until_ms`` only, if given)."""
        cfg = self.config or SuggestConfig()
        if not isinstance(cfg, SuggestConfig):
            raise TypeError(f"config must be a SuggestConfig; got {type(cfg).__name__}")
        mining = cfg.mining()
        searches = load_searches(con, config=mining, until_ms=until_ms)
        log = mine_queries(searches, mining)
        if len(log) == 0:
            raise ValueError(
                f"no query reached min_count={cfg.min_count} / min_users={cfg.min_users} "
                f"among {len(searches)} searches; lower them in [suggest]"
            )
        catalog = Catalog.from_items(con.sql("SELECT * FROM items").to_arrow_table())
        qcat = _query_categories(log, catalog)
        auto = _fit_autocomplete(con, cfg, searches, catalog, _index_data(searches, log, qcat))

        sessions = query_sessions(searches, log, cfg.session_gap_minutes)
        cooc = cooccurrence(sessions, window=cfg.related_window)
        emb = embedding_neighbours(log.queries, query_vectors, top=2 * cfg.related_top)
        tok = token_neighbours(log.queries, log.score, top=2 * cfg.related_top)
        in_context = context_filter(
            query_markets(searches.text.tolist(), searches.market.tolist(), log.index, len(log)),
            query_categories(log.clicked_items,
                             lambda item: catalog.attrs.get(item, {}).get("category")),
            sessions)
        indptr, rel_ids, rel_scores = merge_related(
            log.queries, cooc, emb, tok, embedding_weight=cfg.embedding_weight,
            token_weight=cfg.token_weight, top=cfg.related_top, keep=in_context,
        )
        conv = conversion_score(log.count, log.booking_rate, log.ctr)
        by_cat = hints_by_category(qcat, conv, top=cfg.hints_per_category)
        popular = [int(q) for q in np.argsort(-log.score, kind="stable")[:50]]
        user_cats, user_mkt = user_interests(
            con, half_life_days=cfg.half_life_days, until_ms=until_ms
        )
        refine: dict[str, list[dict[str, Any]]] = {}
        for q in np.argsort(-log.score, kind="stable")[: cfg.refine_top_queries]:
            chips = refinements(log.queries[q], log.clicked_items[q], catalog,
                                top=cfg.refinements_per_query)
            if chips:
                refine[log.queries[q]] = chips

        self.auto_ = auto
        self.completer_ = auto.sources_.completer
        self.queries_ = log.queries
        self.query_stats_ = {
            "count": log.count.astype(np.int64),
            "score": log.score.astype(np.float64),
            "ctr": log.ctr.astype(np.float64),
            "booking_rate": log.booking_rate.astype(np.float64),
        }
        self.query_category_ = qcat
        self.query_market_ = log.market
        self.related_ = (indptr, rel_ids, rel_scores)
        self.hints_by_category_ = by_cat
        self.popular_ = popular
        self.user_categories_ = dict(sorted(user_cats.items()))  # id order, not events'
        self.user_market_ = dict(sorted(user_mkt.items()))
        self.refinements_ = refine
        self.fit_info_ = {
            "searches": len(searches),
            "queries": len(log),
            "blocked": log.n_blocked,
            "below_support": log.n_below_support,
            "sessions_with_2plus": len(sessions),
            "embedding_anchors": len(emb),
            "users_profiled": len(user_cats),
            "refined_queries": len(refine),
            **getattr(auto, "order_info_", {}),
        }
        self._post_load()
        return self

    def _post_load(self) -> None:
        self._index = {q: i for i, q in enumerate(self.queries_)}

    # -- serving API -------------------------------------------------------------------
    def _context(
        self, user_id: str | None, categories: Iterable[str] | None, market: str | None
    ) -> tuple[list[str], str | None]:
        cats = list(categories) if categories is not None else \
            self.user_categories_.get(user_id or "", [])
        mkt = market if market is not None else self.user_market_.get(user_id or "")
        return cats, mkt

    @property
    def max_completions(self) -> int:
        """The most completions :meth:`complete` returns (the index keeps this many per prefix)."""
        return int(self.completer_.candidates)

    def complete(
        self,
        prefix: str,
        k: int = 10,
        *,
        user_id: str | None = None,
        categories: Iterable[str] | None = None,
        market: str | None = None,
        previous_query: str | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Completions of ``prefix`` in the learned order, conditioned on the session's
        ``previous_query`` and the user's categories/market.

        Online ``categories``/``market`` override the profile learned for ``user_id``.
        """
        check_is_fitted(self, "completer_")
        cats, mkt = self._context(user_id, categories, market)
        ctx = SessionContext(previous_query or "", tuple(cats), mkt)
        return self.auto_.complete(prefix, k, context=ctx)

    def related(self, query: str, k: int = 10) -> list[str]:
        """Queries people also search after ``query`` (never a re-spelling of it)."""
        check_is_fitted(self, "completer_")
        if not positive_int(k):
            raise ValueError(f"k must be a positive int; got {k!r}")
        norm = normalize_query(query)
        q = self._index.get(norm)
        if q is None:  # unseen query: borrow the lists of its best completion
            done, _ = self.completer_.complete(norm, 1) if norm else ([], None)
            q = self._index.get(done[0]) if done else None
            if q is None:
                return []
        indptr, ids, _ = self.related_
        sig = frozenset(norm.split())
        out = [self.queries_[int(b)] for b in ids[indptr[q] : indptr[q + 1]]]
        return [r for r in out if frozenset(r.split()) != sig][:k]

    def hint(
        self,
        user_id: str | None = None,
        k: int = 1,
        *,
        categories: Iterable[str] | None = None,
        market: str | None = None,
        recent_queries: Iterable[str] = (),
    ) -> list[str]:
        """Hint queries for the empty box; popular queries for users with no history."""
        check_is_fitted(self, "completer_")
        if not positive_int(k):
            raise ValueError(f"k must be a positive int; got {k!r}")
        cats, mkt = self._context(user_id, categories, market)
        exclude = {self._index[n] for n in map(normalize_query, recent_queries) if n in self._index}
        ids = pick_hints(cats, self.hints_by_category_, self.popular_, self.query_market_,
                         market=mkt, exclude=exclude, k=k)
        return [self.queries_[q] for q in ids]

    def refinements(self, query: str, k: int = 8) -> list[dict[str, Any]]:
        """Refinement chips (attribute, value, share, score, query) for ``query``."""
        check_is_fitted(self, "completer_")
        if not positive_int(k):
            raise ValueError(f"k must be a positive int; got {k!r}")
        return list(self.refinements_.get(normalize_query(query), []))[:k]

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write ``config.json``, ``model.json``, ``arrays.npz`` and ``autocomplete/``."""
        check_is_fitted(self, "completer_")
        directory.mkdir(parents=True, exist_ok=True)
        self.auto_.save(directory / "autocomplete")
        cfg = self.config or SuggestConfig()
        (directory / "config.json").write_text(
            json.dumps({"format": _FORMAT, "config": to_mapping(cfg)}, indent=1)
        )
        meta = {
            "queries": self.queries_,
            "query_category": self.query_category_,
            "query_market": self.query_market_,
            "hints_by_category": self.hints_by_category_,
            "popular": self.popular_,
            "user_categories": self.user_categories_,
            "user_market": self.user_market_,
            "refinements": self.refinements_,
            "fit_info": self.fit_info_,
        }
        (directory / "model.json").write_text(json.dumps(meta, ensure_ascii=False))
        indptr, ids, scores = self.related_
        arrays = {"related_indptr": indptr, "related_ids": ids, "related_scores": scores,
                  **{f"stat_{k}": v for k, v in self.query_stats_.items()}}
        np.savez(directory / "arrays.npz", allow_pickle=False, **arrays)

    @classmethod
    def load(cls, directory: Path) -> QuerySuggester:
        """Read a model written by :meth:`save` (refuses unknown formats and config keys)."""
        cfg_path = directory / "config.json"
        if not cfg_path.exists():
            raise ArtifactError(f"{cfg_path}: missing; run 'funnel suggest build'")
        raw = json.loads(cfg_path.read_text())
        if raw.get("format") != _FORMAT:
            raise ArtifactError(f"{cfg_path}: format {raw.get('format')!r}, expected {_FORMAT!r}; "
                                "rebuild with 'funnel build --stages suggest'")
        obj = cls(from_mapping(SuggestConfig, raw["config"], where=str(cfg_path)))
        meta = json.loads((directory / "model.json").read_text())
        obj.auto_ = AutoCompleter.load(directory / "autocomplete")
        obj.completer_ = obj.auto_.sources_.completer
        obj.queries_ = meta["queries"]
        obj.query_category_ = meta["query_category"]
        obj.query_market_ = meta["query_market"]
        obj.hints_by_category_ = {k: list(v) for k, v in meta["hints_by_category"].items()}
        obj.popular_ = list(meta["popular"])
        obj.user_categories_ = meta["user_categories"]
        obj.user_market_ = meta["user_market"]
        obj.refinements_ = meta["refinements"]
        obj.fit_info_ = meta["fit_info"]
        with np.load(directory / "arrays.npz", allow_pickle=False) as data:
            obj.related_ = (data["related_indptr"], data["related_ids"], data["related_scores"])
            obj.query_stats_ = {k[5:]: data[k] for k in data.files if k.startswith("stat_")}
        obj._post_load()
        return obj

