"""The server's fast paths change nothing: the same ids, scores, kinds and debug values as the
reference paths (pairwise query match, every field encoded per candidate, recall sources on
the thread pool, candidate lookups by id) on fixed requests."""
# (tests/serve/test_item_table.py holds the stages aligned to the catalog to the stages as
# loaded, looking ids up in their own snapshots)

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from funnel.engine.core import MATCH_COLUMNS, Engine
from funnel.features.personalization import RecentActions
from funnel.features.query_match import query_match_features
from funnel.recall.merger import Merger


class PairwiseTerms:
    """TermIndex's interface over the pairwise function training uses."""

    def __init__(self, columns: list[list]) -> None:
        self.columns = columns

    def features(self, query, rows):
        picked = [[col[r] for r in rows] for col in self.columns]
        return query_match_features([query] * len(rows), *picked)


def _requests(engine: Engine) -> list[dict]:
    titles = engine.catalog.columns["title"]
    clicks = engine.catalog.ids[:40].tolist()
    queries = [str(titles[i]) for i in range(0, len(titles), max(1, len(titles) // 11))] + [
        engine.catalog.markets[0], f"{engine.catalog.markets[-1]} loft", "lofts", "cabn", ""]
    out = []
    for i, q in enumerate(queries):
        state = RecentActions(clicks=tuple(clicks[i : i + i % 5]))
        out.append({"query": q, "user_id": None, "market": None, "filters": {}, "k": 20,
                    "state": state, "debug": i % 3 == 0})
    out.append({"query": "", "user_id": "u1", "market": engine.catalog.markets[0],
                "filters": {}, "k": 30, "state": RecentActions(clicks=tuple(clicks[:3])),
                "debug": True})
    return out


def _run_all(engine: Engine, requests: list[dict]) -> list[tuple]:
    out = []
    for req in requests:
        r = engine.run(**req)
        out.append((r.item_ids, [float(s) for s in r.scores], r.kinds, r.debug))
    return out


@pytest.fixture(scope="module")
def engine(served_workspace):
    torch.set_num_threads(1)
    eng = Engine.load(served_workspace.artifacts.require_current())
    yield eng
    eng.close()


class _ById:
    """A stage called without the catalog rows the engine hands it: it looks the ids up."""

    def __init__(self, stage) -> None:
        self._stage = stage

    def __getattr__(self, name):
        return getattr(self._stage, name)

    def score(self, item_ids, *, rows=None, **kw):
        return self._stage.score(item_ids, **kw)

    def rerank(self, item_ids, scores, *, catalog_rows=None, **kw):
        return self._stage.rerank(item_ids, scores, **kw)


def _without_row_maps(engine: Engine, monkeypatch, **changes) -> Engine:
    """Every lookup by id again: no catalog rows handed to the stages, no vector rows mapped
    at load, no match values handed to the ranker, no remembered encodings, no packed item
    fields. A new engine (a loaded one is never changed); the rank stage, shared with it, is
    patched for the test."""
    rank = engine.rank
    monkeypatch.setattr(rank, "_vector_rows", None)  # personalization looks vectors up by id
    monkeypatch.setattr(rank, "_broadcast", _Forgetful())
    monkeypatch.setattr(rank, "item_parts", dict(rank.item_parts))  # per-field takes
    return replace(
        engine,
        rank=_ById(rank),  # rows looked up by id in the ranker
        rerank=_ById(engine.rerank),  # the re-ranker looks its ids up
        search_rerank=_ById(engine.search_rerank),
        shared_terms=False,  # the ranker computes its own qm_*
        **changes,
    )


class _Forgetful(dict):
    """A cache that never remembers."""

    def __setitem__(self, key, value) -> None:
        pass


def test_fast_paths_give_identical_results(engine, monkeypatch):
    requests = _requests(engine)
    fast = _run_all(engine, requests)
    assert sum(len(ids) for ids, *_ in fast) > 200  # the requests do return lists
    assert engine.shared_terms and engine.rerank.catalog is not None  # the paths under test
    assert engine.rank._vector_rows is not None and engine.rank._packed is not None

    rank = engine.rank
    text = ("title", "category", "brand", "market")
    old = engine.recall.merger
    pooled = Merger(old.sources, quotas=old.quotas, timeout_s=old.timeout_s)
    reference = _without_row_maps(
        engine, monkeypatch,
        terms=PairwiseTerms([engine.catalog.columns[c].tolist() for c in MATCH_COLUMNS]),
        recall=replace(engine.recall, merger=pooled),  # sources on the thread pool
    )
    monkeypatch.setattr(rank, "term_index", PairwiseTerms(
        [rank.item_cols[c].tolist() for c in text]))
    monkeypatch.setattr(rank, "item_codes", {})  # every cross field encoded per candidate
    reference_encode = rank.ranker.features_.encode_fields

    def encode_every_row(cols, rows):
        names = [s.name for s in rank.ranker.features_.specs if s.name not in rank.item_parts]
        return reference_encode(cols, names)

    monkeypatch.setattr(rank, "_encode_request_fields", encode_every_row)
    try:
        slow = _run_all(reference, requests)
    finally:
        pooled.close()
    assert len(slow) == len(fast)
    for req, a, b in zip(requests, fast, slow, strict=True):
        # through JSON, as the server sends it (debug holds NaN for missing bids)
        assert json.dumps(a, default=str) == json.dumps(b, default=str), req["query"]


def test_rank_rows_must_align_with_the_ids(engine):  # catalog rows, one per id
    ids = engine.catalog.ids[:3].tolist()
    with pytest.raises(ValueError, match=r"'rows' must be 3 snapshot rows in \[-1, "):
        engine.rank.score(ids, query="", market=None, state=RecentActions(),
                          rows=np.array([0, 1]))


def test_inline_merger_matches_the_pooled_one_on_the_real_sources(engine):
    from funnel.recall.base import RecallRequest

    old = engine.recall.merger
    assert set(old.inline) == {s.name for s in old.sources}  # an artifact's sources are inline
    pooled = Merger(old.sources, quotas=old.quotas, timeout_s=old.timeout_s)
    try:
        for q in ["loft", engine.catalog.markets[0], None]:
            req = RecallRequest(query=q, recent_items=tuple(engine.catalog.ids[:2]), k=1000)
            a, b = old.recall(req), pooled.recall(replace(req))
            assert a.item_ids.tolist() == b.item_ids.tolist()
            np.testing.assert_array_equal(a.scores, b.scores)
            assert a.provenance == b.provenance and len(a) > 50
    finally:
        pooled.close()


def test_full_transform_reference_gives_identical_results(engine, monkeypatch):
    """The strongest reference: every field of every candidate encoded from its raw columns by
    the feature set's own transform, every row looked up by id, pairwise query match."""
    requests = _requests(engine)
    fast = _run_all(engine, requests)
    rank = engine.rank
    reference = _without_row_maps(
        engine, monkeypatch,
        terms=PairwiseTerms([engine.catalog.columns[c].tolist() for c in MATCH_COLUMNS]))
    monkeypatch.setattr(rank, "item_parts", None)  # ranker.predict_proba(raw columns)
    monkeypatch.setattr(rank, "term_index", PairwiseTerms(
        [rank.item_cols[c].tolist() for c in ("title", "category", "brand", "market")]))
    slow = _run_all(reference, requests)
    for req, a, b in zip(requests, fast, slow, strict=True):
        assert json.dumps(a, default=str) == json.dumps(b, default=str), req["query"]


def test_served_features_are_the_full_columns(engine):
    """score() gathers item columns only when read; read, they are columns() exactly, in its
    order (debug output lists them in this order)."""
    rank = engine.rank
    ids = [i for i in engine.catalog.ids[:80].tolist() if rank.rows([i])[0] >= 0][:40]
    state = RecentActions(clicks=tuple(engine.catalog.ids[:2].tolist()))
    query = str(engine.catalog.columns["title"][7])
    _, lazy = rank.score(ids, query=query, market=None, state=state)
    assert not isinstance(lazy, dict)  # the lazy path: every candidate is in the snapshot
    full = rank.columns(ids, query=query, market=None, state=state)
    assert len(ids) == 40 and list(lazy) == list(full) and len(lazy) == len(full)
    for name in full:  # through JSON: NaN bids compare equal
        a, b = np.asarray(lazy[name]).tolist(), np.asarray(full[name]).tolist()
        assert json.dumps(a, default=str) == json.dumps(b, default=str), name


def test_query_match_passed_to_the_ranker_is_checked(engine):
    ids = engine.catalog.ids[:3].tolist()
    bad = {"qm_term_share": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"'query_match' must hold the columns \['qm_term_share'"):
        engine.rank.score(ids, query="loft", market=None, state=RecentActions(),
                          query_match=bad)


def test_rerank_catalog_rows_give_the_lookup_by_id(engine):
    catalog = engine.rerank.catalog
    assert catalog is not None
    ids = [*catalog.item_ids[:30], "no-such-item", catalog.item_ids[3]]
    by_id = catalog.features(ids)
    at = catalog.features_at(catalog.rows(ids))
    assert at.attributes == by_id.attributes and at.attributes["brand"][30] is None
    np.testing.assert_array_equal(at.vectors, by_id.vectors)
    assert by_id.attributes["category"][:30] == catalog.attributes["category"][:30]
    with pytest.raises(ValueError, match=r"'rows' must be a 1-D integer array of catalog rows"):
        catalog.features_at(np.array([0, len(catalog)]))


def test_coded_columns_read_the_column(engine):
    catalog = engine.catalog
    rows = np.array([0, 3, len(catalog) - 1, 3, 17])
    for name in ("brand", "category", "market"):
        assert catalog.take_text(name, rows) == catalog.columns[name][rows].tolist()
    with pytest.raises(KeyError, match="catalog has no column 'colour'"):
        catalog.coded("colour")


@pytest.mark.parametrize("method", ["none", "dpp", "mmr"])
def test_rerank_by_catalog_rows_equals_rerank_by_id(engine, method):
    """Every re-rank step (merch, sponsored slots, diversity, scatter) gives the same list,
    scores, kinds and report whether the pipeline looks ids up or is handed their rows."""
    from funnel.rerank.pipeline import RerankPipeline

    catalog = engine.rerank.catalog
    ids = catalog.item_ids[:120]
    brand = catalog.attributes["brand"][7]
    config = replace(
        engine.rerank.config, method=method, sponsored_positions=(1, 6),
        scatter=({"attribute": "brand", "max_count": 1, "window": 3},
                 {"attribute": "price_band", "max_count": 2, "window": 4}),
        merch=({"action": "pin", "item_id": ids[40], "position": 0},
               {"action": "boost", "attribute": "brand", "value": brand, "amount": 0.2}),
    )
    pipeline = RerankPipeline(config, catalog=catalog)
    rng = np.random.default_rng(3)
    scores = rng.random(len(ids))
    sponsored = catalog.item_ids[200:204] + [ids[5]]
    ecpm = rng.random(len(sponsored))
    for given in (None, engine.rerank_features(ids, search=method == "none")):
        kw = {"k": 20, "features": given, "sponsored_ids": sponsored, "sponsored_ecpm": ecpm}
        a = pipeline.rerank(ids, scores, catalog_rows=catalog.rows(ids), **kw).to_dict()
        b = pipeline.rerank(ids, scores, **kw).to_dict()
        for d in (a, b):
            d.pop("timings_ms")
        assert a == b and len(a["item_ids"]) == 20 and "sponsored" in a["kinds"]
    with pytest.raises(ValueError, match=r"'catalog_rows' must hold one row per item \(120\)"):
        pipeline.rerank(ids, scores, k=5, catalog_rows=catalog.rows(ids[:3]))


@pytest.mark.parametrize("method", ["none", "dpp"])
def test_rerank_without_scatter_rules_equals_rules_that_never_bind(engine, method):
    """Without scatter rules the pipeline hands scatter only the rows that can be shown; a rule
    that can never bind (at most 3 per 3 positions) runs scatter over the whole list: same
    list, scores, kinds and report (moved, pulled in, nDCG)."""
    from funnel.rerank.pipeline import RerankPipeline

    catalog = engine.rerank.catalog
    ids = catalog.item_ids[:150]
    scores = np.random.default_rng(4).random(len(ids))
    base = replace(engine.rerank.config, method=method, sponsored_positions=(2,),
                   merch=({"action": "pin", "item_id": ids[90], "position": 1},
                          {"action": "bury", "item_id": ids[0]}))
    never = replace(base, scatter=({"attribute": "brand", "max_count": 3, "window": 3},))
    assert len(catalog) > 160
    kw = {"k": 12, "sponsored_ids": [catalog.item_ids[-1]], "sponsored_ecpm": [5.0],
          "catalog_rows": catalog.rows(ids)}
    a = RerankPipeline(base, catalog=catalog).rerank(ids, scores, **kw).to_dict()
    b = RerankPipeline(never, catalog=catalog).rerank(ids, scores, **kw).to_dict()
    for d in (a, b):
        d.pop("timings_ms")
    assert a == b and a["kinds"][1:3] == ["pinned", "sponsored"] and len(a["item_ids"]) == 12


def test_describe_many_equals_describe_per_item(engine):
    cat = engine.catalog
    ids = [str(i) for i in cat.ids[[0, 5, 3, len(cat.ids) - 1, 5]]]
    names = tuple(cat.columns)
    assert cat.describe_many(ids, names) == [cat.describe(i) for i in ids]
    assert cat.describe_many(ids, ("title", "nope")) == [
        {"title": cat.describe(i)["title"]} for i in ids
    ]
    assert cat.describe_many([], names) == []
    with pytest.raises(KeyError, match="not-an-item"):
        cat.describe_many([ids[0], "not-an-item"], names)
