"""The funnel orchestrator: recall (~1000) -> rank (~500) -> re-rank (k), from one artifact.

An :class:`Engine` is immutable once loaded: requests only read it, and a reload builds a new
engine and swaps a reference, so in-flight requests finish on the version they started with;
an evaluation that needs other settings builds its own (:meth:`Engine.with_recall_deadline`,
:func:`dataclasses.replace`). It knows nothing of HTTP; the server knows nothing of how the
models were trained. Its stages are typed by the Protocols of :mod:`funnel.engine`: the few
verbs the engine calls on each.

The catalog (``catalog/items.parquet``) is the one item table: a request's candidates are
mapped to catalog rows once (the recall merger does it, :meth:`Merger.use_catalog`), and every
stage holds its per-item arrays by catalog row - :meth:`load` aligns the rank stage's item
snapshot, the re-rank attributes and the item vectors to the catalog once, and the stages are
then handed catalog rows.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from funnel.catalog import Catalog
from funnel.engine import RankStage, RecallStage, RerankStage, SharesTerms, SuggestStage
from funnel.engine.rank_loading import load_rank_stage
from funnel.exceptions import ArtifactError, FunnelError
from funnel.features.personalization import RecentActions
from funnel.features.query_match import TermIndex, fuzzy_match, terms
from funnel.features.session_window import earlier_clicks, session_state
from funnel.rank.recall_features import recall_feature_columns
from funnel.recall.base import CandidateSource, RecallRequest
from funnel.recall.merger import Provenance
from funnel.vectors import AlignedVectors, VectorTable, load_vectors

if TYPE_CHECKING:
    from funnel.recall.build import RecallBundle
    from funnel.recall.merger import Merger
    from funnel.rerank.base import ItemFeatures

log = logging.getLogger(__name__)

GENERATIVE_QUOTA = 200
"""Candidates taken from the generative source when the artifact has one."""

MATCH_COLUMNS = ("title", "category", "brand", "market")
"""Catalog columns the query-match features read, in their argument order."""

MIN_SEARCH_CANDIDATES = 50
"""A search keeps at least this many of its best-matching candidates for the ranker."""


class UnknownItemError(FunnelError, KeyError):
    def __init__(self, item_id: str) -> None:
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class StageResult:
    item_ids: list[str]
    scores: list[float]
    kinds: list[str]
    timings_ms: dict[str, float]
    debug: list[dict[str, Any]] | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    match: str | None = None
    """A search's match with its query: "exact" (an item matches every term), "partial"
    (some terms, or items the logs tie to the query), "none" (nothing does: the list is the
    browse fallback, and a page should say so); None for browse feeds and similar items."""


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


@dataclass(frozen=True)
class Engine:
    """Every loaded stage of one artifact version (frozen: nothing changes it once loaded)."""

    version: str
    path: Path
    catalog: Catalog
    recall: RecallStage  # funnel.recall.build.RecallBundle
    rank: RankStage | None  # funnel.rank.serving.ServingRanker; None: recall's fused order
    rerank: RerankStage  # funnel.rerank.pipeline.RerankPipeline, for browse feeds
    search_rerank: RerankStage  # the same pipeline without the diversity step, for searches
    suggest: SuggestStage | None  # funnel.suggest.model.QuerySuggester
    item_vectors: VectorTable | None  # the artifact's item vectors (recall's table, shared)
    recall_k: int = 1000
    rank_k: int = 500
    terms: TermIndex | None = None  # the catalog's item terms, for the search match gate
    catalog_vectors: AlignedVectors | None = None  # item_vectors by catalog row (no copy)
    shared_terms: bool = False  # the ranker's term index is the catalog's: reuse match values

    @classmethod
    def load(cls, artifact_dir: Path, *, recall_k: int = 1000, rank_k: int = 500) -> Engine:
        """Load every component of ``artifact_dir``; raises ArtifactError naming what is missing."""
        from funnel.recall.build import load_recall
        from funnel.rerank.pipeline import RerankConfig, RerankPipeline

        artifact_dir = Path(artifact_dir).resolve()
        catalog = Catalog.load(artifact_dir)
        ids = catalog.ids.tolist()  # the one item table: every stage is aligned to its rows
        recall = load_recall(artifact_dir)
        if (artifact_dir / "generative").exists():
            recall = _with_generative(recall, artifact_dir)
        vectors = _item_vectors(artifact_dir, recall)
        by_row = vectors.aligned_to(ids) if vectors is not None else None
        loaded = load_rank_stage(artifact_dir, vectors)
        if loaded is not None and not isinstance(loaded, RankStage):
            raise ArtifactError(f"{artifact_dir / 'rank'}: not a rank stage: {type(loaded)}")
        rank: RankStage | None = (
            loaded.aligned_to(ids, lookup=catalog.rows) if loaded is not None else None)
        del loaded  # the snapshot-ordered arrays: the aligned ones replace them
        rerank_dir = artifact_dir / "rerank"
        if (rerank_dir / "config.json").exists():
            rerank = RerankPipeline.load(rerank_dir, vectors=vectors).aligned_to(
                ids, lookup=catalog.rows, vectors=by_row)
        else:
            rerank = RerankPipeline(RerankConfig())
        # A search keeps the ranker's order by default (merch, sponsored slots and scatter
        # rules still apply): the query already chose what the list is about, and DPP over
        # brand or embedding similarity would push equally relevant items (two Paris lofts of
        # one host) to the bottom. ``search_method`` turns a search diversity step on.
        search_rerank = rerank.with_config(
            replace(rerank.config, method=rerank.config.search_method,
                    diversity=rerank.config.search_diversity))
        terms = TermIndex(*(catalog.columns[c].tolist() for c in MATCH_COLUMNS))
        shared = False
        if isinstance(rank, SharesTerms) and rank.term_index is None:
            shared = _share_terms(rank, catalog, terms)
        for name in ("market", "brand", "category"):  # coded once, read per request
            if name in catalog.columns:
                catalog.coded(name)
        id_rank = catalog.id_rank()
        if id_rank is not None:  # the merger dedupes by row and breaks ties on integers
            recall.merger.use_catalog(catalog.rows, id_rank)
        suggest = None
        if (artifact_dir / "suggest").exists():
            from funnel.suggest.build import load_suggest

            suggest = load_suggest(artifact_dir)
        engine = cls(
            version=artifact_dir.name,
            path=artifact_dir,
            catalog=catalog,
            recall=recall,
            rank=rank,
            rerank=rerank,
            search_rerank=search_rerank,
            suggest=suggest,
            item_vectors=vectors,
            recall_k=recall_k,
            rank_k=rank_k,
            terms=terms,
            catalog_vectors=by_row,
            shared_terms=shared,
        )
        engine.warm_up()
        return engine

    def warm_up(self) -> None:
        """Run each path once so JIT compilation and lazy loads happen before traffic does."""
        state = RecentActions()
        some = self.catalog.ids[:3].tolist()
        self.run(query="", user_id=None, market=None, filters={}, k=10, state=state)
        self.run(
            query=str(self.catalog.columns["title"][0] or "x"),
            user_id=None,
            market=None,
            filters={},
            k=10,
            state=RecentActions(clicks=tuple(some)),
        )
        if self.suggest is not None:
            self.suggest.complete("a", 5)

    def close(self) -> None:
        self.recall.merger.close()

    # -- the funnel --------------------------------------------------------------------
    def with_recall_deadline(self, timeout_s: float) -> Engine:
        """A new engine on the same stages whose recall merger waits ``timeout_s`` for its
        sources (offline evaluation: no source dropped for being slow); this one is unchanged.
        """
        return replace(self, recall=replace(
            _bundle(self.recall), merger=_merger(self.recall.merger, timeout_s=timeout_s,
                                                 catalog=self.catalog)))

    def with_recall_source(self, source: CandidateSource, *, quota: int = GENERATIVE_QUOTA
                           ) -> Engine:
        """A new engine whose recall also runs ``source`` (a what-if for evaluation; the
        served one adds the artifact's sources at :meth:`load`); this one is unchanged."""
        bundle = _bundle(self.recall)
        merger = _merger(bundle.merger, timeout_s=bundle.merger.timeout_s, catalog=self.catalog,
                         add=(source, quota))
        return replace(self, recall=replace(
            bundle, sources={**bundle.sources, source.name: source}, merger=merger))

    def without_recall_source(self, name: str) -> Engine:
        """A new engine whose recall runs every source but ``name`` (same quotas, deadline and
        fusion), so an evaluation can say what one source adds to the served list; this one
        is unchanged. Raises ``KeyError`` when the engine has no such source."""
        if name not in self.recall.sources:
            raise KeyError(f"no recall source {name!r}; the engine has "
                           f"{sorted(self.recall.sources)}")
        bundle = _bundle(self.recall)
        sources = {k: v for k, v in bundle.sources.items() if k != name}
        merger = _merger(bundle.merger, timeout_s=bundle.merger.timeout_s, catalog=self.catalog,
                         drop=name)
        return replace(self, recall=replace(bundle, sources=sources, merger=merger))

    def rerank_features(
        self, ids: list[str], *, search: bool, rows: np.ndarray | None = None
    ) -> ItemFeatures:
        """What diversity may compare: for a browse feed, embeddings + category + brand; for a
        search, brand only - the query already chose the category and the place, and spreading
        a "loft" search over cabins to look diverse would be a relevance bug."""
        from funnel.rerank.base import ItemFeatures

        rows = self.catalog.rows(ids) if rows is None else rows
        brand = self.catalog.take_text("brand", rows)
        if search:
            return ItemFeatures(vectors=None, attributes={"brand": brand})
        vectors = None
        by_row = self.catalog_vectors
        if by_row is not None and (rows >= 0).all():
            if by_row.known(rows).all():
                vectors = by_row.take(rows)
        elif by_row is not None:  # ids the catalog lacks (never a served list's): by id
            index = by_row.table.index()
            vec_rows = np.array([index.get(i, -1) for i in ids], dtype=np.int64)
            if (vec_rows >= 0).all():
                vectors = by_row.table.vectors[vec_rows]
        category = self.catalog.take_text("category", rows)
        return ItemFeatures(vectors=vectors, attributes={"brand": brand, "category": category})

    def run(
        self,
        *,
        query: str,
        user_id: str | None,
        market: str | None,
        filters: dict[str, str],
        k: int,
        state: RecentActions,
        debug: bool = False,
        now_ms: int | None = None,
    ) -> StageResult:
        """Recall -> rank -> re-rank for one request. ``now_ms``: the request's time, which
        the ranker's session features read as training rows did (a long click counts once its
        dwell has passed the threshold); the server passes the wall clock."""
        timings: dict[str, float] = {}
        t_all = time.perf_counter()
        if query and market is None:
            market = self.market_in_query(query)

        t0 = time.perf_counter()
        # recall and the browse feed's exclusions follow the session in progress (the state
        # spans the user's sessions, a week; the ranker reads as much as it was trained on);
        # lodging sessions are about one destination, so market-aware sources (popularity,
        # vector ANN) recall from the market the session is clicking in
        session = session_state(state, now_ms)
        recall_market = market if market or query else self.session_market(session)
        request = RecallRequest(
            user_id=user_id,
            query=query or None,
            market=recall_market,
            recent_items=tuple(session.clicks[-5:]),
            earlier_items=self.in_market(earlier_clicks(state, session), recall_market),
            filters=dict(filters),
            k=self.recall_k,
        )
        merged = self.recall.merger.recall(request)
        provenance = merged.provenance
        all_ids = None  # the catalog's ids at ``rows`` when the merger found every row
        if merged.rows is not None:  # the merger looked every candidate's row up
            rows = merged.rows
        else:
            all_ids = np.array([str(i) for i in merged.item_ids.tolist()], dtype=object)
            rows = self.catalog.rows(all_ids.tolist())  # every candidate's row, looked up once
        keep = self._admissible(rows, market, filters)
        if not query and session.clicks and self.recall.config.session_exclude_recent:
            keep = self._unseen(keep, rows, session)
        match = None  # the candidates' query-match columns, when the ranker can reuse them
        match_kind = None
        if query:
            keep, match, match_kind = self._match(query, rows, provenance, keep)
        rows = rows[keep]
        id_arr = self.catalog.ids[rows] if all_ids is None else all_ids[keep]  # object
        ids = id_arr.tolist()
        at = keep  # candidate -> its position in the merged list
        fused = merged.scores[keep] if len(keep) else np.empty(0, np.float32)
        timings["recall"] = _ms(t0)
        for name, ms in merged.timings_ms.items():
            timings[f"recall.{name}"] = round(ms, 3)

        t0 = time.perf_counter()
        ids, at, fused = ids[: self.rank_k], at[: self.rank_k], fused[: self.rank_k]
        id_arr = id_arr[: self.rank_k]
        rows = rows[: self.rank_k]
        features: Mapping[str, np.ndarray] = {}
        if self.rank is not None and ids:
            extra = {}
            if match is not None and self.shared_terms and self.rank.covers(rows):
                # the ranker's term index would compute these very values again
                extra["query_match"] = {c: v[: self.rank_k] for c, v in match.items()}
            if self.rank.recall_sources:  # ranks over the whole merged list, then those kept
                rec = recall_feature_columns(provenance, self.rank.recall_sources)
                extra["recall"] = {c: v[at] for c, v in rec.items()}
            rank_state = session if self.rank.state_scope == "session" else state
            scores, features = self.rank.score(
                ids, query=query, market=market, state=rank_state, user_id=user_id,
                rows=rows, now_ms=now_ms, **extra,
            )
        else:
            scores = np.asarray(fused, dtype=np.float64)
        timings["rank"] = _ms(t0)

        t0 = time.perf_counter()
        order = np.argsort(-scores, kind="stable")
        ranked = id_arr[order].tolist() if ids else []
        ranked_rows = rows[order]
        ranked_scores = scores[order]
        sponsored_ids, ecpm = self._sponsored(ranked, ranked_rows, ranked_scores)
        pipeline = self.search_rerank if query else self.rerank
        result = (
            pipeline.rerank(
                ranked,
                ranked_scores,
                k=min(k, len(ranked)) if ranked else 1,
                features=self.rerank_features(ranked, search=bool(query), rows=ranked_rows),
                sponsored_ids=sponsored_ids,
                sponsored_ecpm=ecpm,
                **self._catalog_rows(pipeline, ranked_rows),
            )
            if ranked
            else None
        )
        timings["rerank"] = _ms(t0)
        timings["total"] = _ms(t_all)
        if result is None:
            return StageResult([], [], [], timings, [] if debug else None, match=match_kind)
        dbg = None
        if debug:
            pos = {item: i for i, item in enumerate(ids)}
            dbg = []
            for item, kind, score in zip(result.item_ids, result.kinds, result.scores, strict=True):
                i = pos.get(item)
                entry: dict[str, Any] = {"kind": kind, "final_score": round(float(score), 6)}
                if i is not None:
                    sources = provenance[int(at[i])]
                    entry["recall_sources"] = {s: round(v, 4) for s, v in sources.items()}
                    entry["recall_score"] = round(float(fused[i]), 6)
                    entry["rank_score"] = round(float(scores[i]), 6)
                    entry["features"] = {name: _plain(col[i]) for name, col in features.items()}
                dbg.append(entry)
        return StageResult(result.item_ids, result.scores, result.kinds, timings, dbg,
                           match=match_kind)

    def _admissible(
        self, rows: np.ndarray, market: str | None, filters: dict[str, str]
    ) -> np.ndarray:
        """Positions of candidates in the catalog that pass the market and attribute filters
        (int64, ascending)."""
        ok = rows >= 0
        safe = np.where(ok, rows, 0)
        if market:
            codes, values = self.catalog.coded("market")
            same = np.flatnonzero(values[:-1] == market)  # at most one distinct value
            ok &= codes[safe] == same[0] if len(same) else False
        for name, value in filters.items():
            if name in self.catalog.columns:
                ok &= self.catalog.columns[name][safe] == value
        return np.flatnonzero(ok).astype(np.int64, copy=False)

    def _unseen(self, keep: np.ndarray, rows: np.ndarray, state: RecentActions) -> np.ndarray:
        """``keep`` without the items the session already clicked: a browse feed shows what
        is next, not what was seen (the sources leave out only the last 5 clicks they read;
        on MovieLens-100K sequences the older ones took 89% of lists; without them HR@20 went
        from 0.222 to 0.267).
        ``[recall] session_exclude_recent = false`` re-shows them instead."""
        seen = self.catalog.rows(list(dict.fromkeys(state.clicks)))
        seen = seen[seen >= 0]
        if not len(seen) or not len(keep):
            return keep
        return keep[~np.isin(rows[keep], seen)]

    def in_market(self, items: tuple[str, ...], market: str | None) -> tuple[str, ...]:
        """``items`` in ``market`` or of no known market (all when ``market`` is None): a
        returning user's items from last week's city stay out of this city's feed."""
        if market is None or not items:
            return items
        markets = self.catalog.attributes(list(items))["market"]
        return tuple(i for i, m in zip(items, markets, strict=True) if not m or m == market)

    def session_market(self, state: RecentActions, last: int = 5) -> str | None:
        """The market of most of the last clicks (at least half of them), else None."""
        recent = list(state.clicks[-last:])
        if not recent:
            return None
        markets = [m for m in self.catalog.attributes(recent)["market"] if m]
        if not markets:
            return None
        best = max(set(markets), key=markets.count)
        return str(best) if markets.count(best) * 2 >= len(recent) else None

    def market_in_query(self, query: str) -> str | None:
        """The market a search names ("paris loft" -> paris), typos included; None if none.

        Lodging searches are per destination, and the logs only ever show a query's own market,
        so a ranker cannot learn that another market is wrong: query understanding does it.
        """
        words = terms(query)
        for market in self.catalog.markets:
            name = terms(market)
            if name and all(any(fuzzy_match(w, frozenset({n})) for w in words) for n in name):
                return market
        return None

    def _match(
        self, query: str, rows: np.ndarray, provenance: Sequence[dict[str, float]],
        keep: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, np.ndarray] | None, str]:
        """For a search, keep candidates that match the query text or came from a query source;
        also returns the query-match columns of the kept ones (the ranker's ``qm_*``) and how
        well the best of them matches (:attr:`StageResult.match`).

        Browse sources (popularity, co-visitation) add items that may have nothing to do with
        the query; a search shows only items that match it, unless nothing matches at all.
        """
        if not len(keep):
            return keep, None, "none"
        index = self.terms  # built at load; an engine built by hand without it builds one
        if index is None:
            index = TermIndex(*(self.catalog.columns[c].tolist() for c in MATCH_COLUMNS))
        features = index.features(query, rows[keep])
        match = features["qm_fuzzy_share"]
        # the best match tier that still leaves enough candidates to rank: an item matching
        # every query term beats one matching half of them, unless too few match every term
        ordered = np.sort(match)[::-1]
        floor = float(ordered[min(MIN_SEARCH_CANDIDATES, len(ordered)) - 1])
        floor = max(floor, 1e-6)
        ok = match >= floor
        loose = np.flatnonzero(~ok)
        if len(loose):  # few candidates miss the tier; of those, keep what a query source found
            if isinstance(provenance, Provenance):
                ok[loose] = provenance.found_by("query_items")[keep[loose]]
            else:
                ok[loose] = ["query_items" in provenance[int(keep[j])] for j in loose.tolist()]
        if not ok.any():  # nothing matches: the browse candidates, and the caller is told
            return keep, features, "none"
        kind = "exact" if float(match[ok].max()) >= 1.0 - 1e-9 else "partial"
        matched = keep[ok]
        return matched, {name: col[ok] for name, col in features.items()}, kind

    def _catalog_rows(self, pipeline: RerankStage, rows: np.ndarray) -> dict[str, np.ndarray]:
        """``catalog_rows`` for ``pipeline.rerank`` when its catalog is the one :meth:`load`
        aligned to the catalog (else nothing: the pipeline looks the ids up)."""
        if (
            pipeline.catalog is None
            or pipeline.catalog is not self.rerank.catalog
            or not len(rows)
            or (rows < 0).any()
        ):
            return {}
        return {"catalog_rows": rows}

    def _sponsored(
        self, ids: list[str], rows: np.ndarray, pctr: np.ndarray
    ) -> tuple[list[str], np.ndarray]:
        """Candidates that carry a bid, with eCPM = pCTR x bid (x1000)."""
        bids = np.asarray(self.catalog.columns["bid"][rows], dtype=np.float64)
        has = np.flatnonzero(bids > 0)  # NaN (no bid) compares False
        return [ids[r] for r in has], pctr[has] * bids[has] * 1000

    def similar(self, item_id: str, k: int) -> StageResult:
        """Nearest items to ``item_id`` in the embedding space, in its market."""
        if item_id not in self.catalog:
            raise UnknownItemError(item_id)
        t0 = time.perf_counter()
        sources = self.recall.sources
        ids: list[str] = []
        scores: list[float] = []
        by_row = self.catalog_vectors
        at = -1 if by_row is None else int(by_row.row_of[self.catalog.rows([item_id])[0]])
        if "vector" in sources and at >= 0:
            vec = sources["vector"]
            # similar listings are alternatives in the same place (a lodging guest compares
            # within a destination); the ANN index filters by market without a scan
            market = self.catalog.describe(item_id).get("market")
            filters = {"market": market} if market and "market" in vec.index.attr_vocab_ else {}
            query_vector = vec.vectors.vectors[at]  # the engine's table is recall's
            found = vec.index.search(query_vector, k + 1, filters=filters)
            ids, scores = _pairs(found)
        if not ids and "covisit" in sources:
            cands = sources["covisit"].candidates(RecallRequest(recent_items=(item_id,), k=k + 1))
            ids, scores = [str(i) for i in cands.item_ids], [float(s) for s in cands.scores]
        pairs = [(i, s) for i, s in zip(ids, scores, strict=True) if i != item_id][:k]
        return StageResult(
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            ["organic"] * len(pairs),
            {"similar": _ms(t0)},
        )


def _with_generative(recall: RecallBundle, artifact_dir: Path) -> RecallBundle:
    """``recall`` with the artifact's generative (DreamRec) source added (see
    :func:`_with_source`)."""
    from funnel.generative.build import load_generative

    return _with_source(recall, load_generative(artifact_dir), GENERATIVE_QUOTA)


def _with_source(recall: RecallBundle, source: CandidateSource, quota: int) -> RecallBundle:
    """``recall`` with ``source`` added to a new merger, with its quota (the bundle given is
    left as it was, its merger closed)."""
    old = recall.merger
    merger = _merger(old, timeout_s=old.timeout_s, catalog=None, add=(source, quota))
    old.close()
    return replace(recall, sources={**recall.sources, source.name: source}, merger=merger)


def _bundle(recall: RecallStage) -> RecallBundle:
    from funnel.recall.build import RecallBundle

    if not isinstance(recall, RecallBundle):
        raise TypeError(f"cannot copy a recall stage of type {type(recall).__name__}")
    return recall


def _merger(old: Any, *, timeout_s: float, catalog: Catalog | None, drop: str | None = None,
            add: tuple[CandidateSource, int] | None = None) -> Merger:
    """A new merger over ``old``'s sources (without ``drop``; with ``add``'s source and its
    quota, run inline: a small in-memory model, like the others) with ``old``'s settings but
    ``timeout_s``, mapped to ``catalog`` as :meth:`Engine.load` maps the served one."""
    from funnel.recall.merger import Merger

    if not isinstance(old, Merger):
        raise TypeError(f"cannot copy a merger of type {type(old).__name__}")
    sources = [s for s in old.sources if s.name != drop]
    quotas = None if old.quotas is None else {k: v for k, v in old.quotas.items() if k != drop}
    inline = None if old.inline is None else [n for n in old.inline if n != drop]
    if add is not None:
        source, quota = add
        sources.append(source)
        quotas = {**(quotas or {}), source.name: quota}
        inline = [*(inline or ()), source.name]
    merger = Merger(
        sources, quotas=quotas, default_quota=old.default_quota, timeout_s=timeout_s,
        rrf_k=old.rrf_k, max_workers=old.max_workers, inline=inline,
        max_in_flight=old.max_in_flight,
        weights={k: v for k, v in old.weights.items() if k != drop},
    )
    id_rank = None if catalog is None else catalog.id_rank()
    if catalog is not None and id_rank is not None:
        merger.use_catalog(catalog.rows, id_rank)
    return merger


def _item_vectors(artifact_dir: Path, recall: RecallStage) -> VectorTable | None:
    """The artifact's item vectors: the table the vector recall source loaded (the same
    file: one copy in memory, not two), else read from ``embeddings/``; None without."""
    source = recall.sources.get("vector")
    table = getattr(source, "vectors", None)
    if isinstance(table, VectorTable):
        return table
    if (artifact_dir / "embeddings" / "item_vectors.npy").exists():
        return load_vectors(artifact_dir / "embeddings", "item")
    return None


def _share_terms(rank: SharesTerms, catalog: Catalog, terms: TermIndex) -> bool:
    """Give the ranker (aligned to the catalog) the catalog's term index when its snapshot's
    texts are the catalog's for every item it has (tokenizing 1M titles takes tens of
    seconds); True when it did (the ranker's match values are then the search gate's: both
    are per-row functions of the same texts)."""
    cols = rank.item_cols
    have = np.array([i is not None for i in cols["item_id"].tolist()], dtype=bool)
    if have.any() and all(
        np.array_equal(catalog.columns[c][have], cols[c][have]) for c in MATCH_COLUMNS
    ):
        rank.term_index = terms
        return True
    return False


def _pairs(found: Any) -> tuple[list[str], list[float]]:
    """(ids, scores) of a 1-D vector-index SearchResult, without its empty slots."""
    ids = np.asarray(found.ids).reshape(-1).tolist()
    scores = np.asarray(found.scores, dtype=float).reshape(-1).tolist()
    pairs = [(str(i), s) for i, s in zip(ids, scores, strict=True) if i is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in list(value)[:5]]
    return value


def require_artifact(workspace_root: Path) -> Path:
    from funnel.artifacts import ArtifactStore

    store = ArtifactStore(workspace_root / "artifacts")
    current = store.current()
    if current is None:
        raise ArtifactError(
            f"{workspace_root}: nothing to serve yet; run 'funnel build --workspace "
            f"{workspace_root}' first"
        )
    return current
