"""The catalog is the one item table: :meth:`Engine.load` aligns the rank stage's item snapshot,
the re-rank attributes and the item vectors to catalog rows, and the stages are handed catalog
rows. Held here to the lookups by id (the stages as loaded, each mapping ids to its own
snapshot's rows, called without rows): the same ids and scores, bit for bit, for browse feeds and
searches with and without session state, similar items, and catalog items a snapshot lacks."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from funnel.engine.core import Engine, _pairs
from funnel.features.personalization import RecentActions
from funnel.rank.serving import load_serving_ranker
from funnel.recall.base import RecallRequest
from funnel.rerank.base import ItemFeatures
from funnel.rerank.pipeline import RerankPipeline
from funnel.vectors import load_vectors

NOW_MS = 1_700_000_000_000


class _ById:
    """A stage as loaded, called as before alignment: the rows it is handed are dropped, so it
    maps the ids to its own snapshot's rows itself."""

    def __init__(self, stage: Any) -> None:
        self._stage = stage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stage, name)

    def score(self, item_ids, *, rows=None, **kw):
        return self._stage.score(item_ids, **kw)

    def rerank(self, item_ids, scores, *, catalog_rows=None, **kw):
        return self._stage.rerank(item_ids, scores, **kw)


class _ByIdEngine(Engine):
    """Re-rank vectors looked up by id in the vector table, as the engine's row maps did."""

    def rerank_features(self, ids, *, search, rows=None):
        rows = self.catalog.rows(ids) if rows is None else rows
        brand = self.catalog.take_text("brand", rows)
        if search:
            return ItemFeatures(vectors=None, attributes={"brand": brand})
        vectors = None
        if self.item_vectors is not None:
            index = self.item_vectors.index()
            vec_rows = np.array([index.get(i, -1) for i in ids], dtype=np.int64)
            if (vec_rows >= 0).all():
                vectors = self.item_vectors.vectors[vec_rows]
        category = self.catalog.take_text("category", rows)
        return ItemFeatures(vectors=vectors, attributes={"brand": brand, "category": category})


def _by_id(engine: Engine) -> Engine:
    """A reference engine on the artifact's stages as loaded (not aligned), called by id; the
    ranker computes its own query match on its own snapshot's term index."""
    artifact = engine.path
    vectors = load_vectors(artifact / "embeddings", "item")
    rerank = RerankPipeline.load(artifact / "rerank", vectors=vectors)
    cfg = rerank.config
    search = RerankPipeline(replace(cfg, method=cfg.search_method,
                                    diversity=cfg.search_diversity), catalog=rerank.catalog)
    values = {f.name: getattr(engine, f.name) for f in fields(Engine)}
    values.update(rank=_ById(load_serving_ranker(artifact)), rerank=_ById(rerank),
                  search_rerank=_ById(search), item_vectors=vectors, catalog_vectors=None,
                  shared_terms=False)
    return _ByIdEngine(**values)


def _requests(engine: Engine) -> list[dict]:
    cat = engine.catalog
    titles = cat.columns["title"]
    ids = cat.ids.tolist()
    queries = [str(titles[i]) for i in range(0, len(titles), max(1, len(titles) // 9))] + [
        cat.markets[0], f"{cat.markets[-1]} loft", "lofts", "cabn", "zzzz nothing"]
    out = []
    for i, q in enumerate(queries + [""] * 6):
        for with_state in (False, True):
            clicks = tuple(ids[i * 3: i * 3 + 1 + i % 5]) if with_state else ()
            out.append({"query": q, "user_id": f"u{i}" if i % 2 else None,
                        "market": cat.markets[i % len(cat.markets)] if not q and i % 3 == 0
                        else None, "filters": {}, "k": 20 + i % 3 * 5,
                        "state": RecentActions(clicks=clicks), "debug": i % 4 == 0,
                        "now_ms": NOW_MS})
    return out


def _run_all(engine: Engine, requests: list[dict]) -> list[str]:
    out = []
    for req in requests:
        r = engine.run(**req)
        # through JSON, as the server sends it; float.hex: exact equality of every score
        out.append(json.dumps([r.item_ids, [float(s).hex() for s in r.scores], r.kinds,
                               r.match, r.debug], default=str))
    return out


def _similar_by_id(engine: Engine, item_id: str, k: int) -> tuple[list[str], list[float]]:
    """``Engine.similar`` as it was: the query vector by id in the vector table."""
    sources = engine.recall.sources
    ids: list[str] = []
    scores: list[float] = []
    index = engine.item_vectors.index() if engine.item_vectors is not None else {}
    if "vector" in sources and item_id in index:
        vec = sources["vector"]
        market = engine.catalog.describe(item_id).get("market")
        filters = {"market": market} if market and "market" in vec.index.attr_vocab_ else {}
        found = vec.index.search(vec.vectors.vectors[index[item_id]], k + 1, filters=filters)
        ids, scores = _pairs(found)
    if not ids and "covisit" in sources:
        cands = sources["covisit"].candidates(RecallRequest(recent_items=(item_id,), k=k + 1))
        ids, scores = [str(i) for i in cands.item_ids], [float(s) for s in cands.scores]
    pairs = [(i, s) for i, s in zip(ids, scores, strict=True) if i != item_id][:k]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="module")
def engine(served_workspace):
    torch.set_num_threads(1)
    eng = Engine.load(served_workspace.artifacts.require_current())
    yield eng
    eng.close()


def test_the_engine_holds_no_row_maps(engine):
    names = {f.name for f in fields(Engine)}
    assert not names & {"vector_rows", "rank_rows", "rerank_rows", "vector_row_of"}
    n = len(engine.catalog)
    assert engine.rank.n_rows == n and len(engine.rerank.catalog) == n
    assert engine.search_rerank.catalog is engine.rerank.catalog
    assert len(engine.catalog_vectors) == n
    # one vector matrix: recall's table, read by catalog row (the re-ranker's too)
    assert engine.item_vectors is engine.recall.sources["vector"].vectors
    assert engine.catalog_vectors.table is engine.item_vectors
    assert engine.rerank.catalog._vectors.table is engine.item_vectors


def test_aligned_stages_give_the_lookups_by_id(engine):
    requests = _requests(engine)
    aligned = _run_all(engine, requests)
    assert sum(len(json.loads(r)[0]) for r in aligned) > 300  # the requests return lists
    assert engine.shared_terms  # the ranker reads the catalog's term index
    reference = _by_id(engine)
    by_id = _run_all(reference, requests)
    for req, a, b in zip(requests, aligned, by_id, strict=True):
        assert a == b, (req["query"], req["state"])


def test_similar_items_are_unchanged(engine):
    checked = 0
    for item in engine.catalog.ids[:60:4].tolist():
        got = engine.similar(item, 10)
        want = _similar_by_id(engine, item, 10)
        assert (got.item_ids, got.scores) == want
        checked += bool(want[0])
    assert checked >= 10


def test_rerank_features_read_the_vectors_of_the_ids(engine):
    reference = _by_id(engine)
    ids = engine.catalog.ids[:50].tolist()
    for search in (False, True):
        a = engine.rerank_features(ids, search=search)
        b = reference.rerank_features(ids, search=search)
        assert a.attributes == b.attributes
        if b.vectors is None:
            assert a.vectors is None
        else:
            np.testing.assert_array_equal(a.vectors, b.vectors)
    # an id outside the catalog is still looked up in the vector table
    outside = [*ids[:3], "not-in-the-catalog"]
    assert engine.rerank_features(outside, search=False).vectors is None


def _drop_items(artifact: Path, out: Path, dropped: set[str]) -> None:
    """A copy of ``artifact`` whose rank snapshot and re-rank attributes lack ``dropped``."""
    shutil.copytree(artifact, out, symlinks=True)
    for name in ("rank/items.parquet", "rerank/item_attributes.parquet"):
        path = out / name
        path.unlink()  # the copy may share the file: never write through it
        table = pq.read_table(artifact / name)
        gone = pa.array(sorted(dropped), pa.string())
        keep = pc.invert(pc.is_in(table.column("item_id"), value_set=gone))
        pq.write_table(table.filter(keep), path)


def test_catalog_items_a_snapshot_lacks_are_served_as_before(engine, tmp_path):
    """Items of the catalog that the rank snapshot and the re-rank attributes lack: unknown to
    those stages (item columns from the request, attributes None, no vector), as a lookup by
    id finds them."""
    ids = engine.catalog.ids.tolist()
    dropped = set(ids[::4])
    _drop_items(engine.path, tmp_path / engine.path.name, dropped)
    torch.set_num_threads(1)
    eng = Engine.load(tmp_path / engine.path.name)
    try:
        assert len(eng.rank.item_cols["item_id"]) == len(ids)  # catalog rows
        missing = eng.catalog.rows(sorted(dropped))
        assert not eng.rank.covers(missing[:1]) and eng.rank.rows(sorted(dropped)).max() == -1
        assert eng.rerank.catalog.rows(sorted(dropped)).max() == -1
        feats = eng.rerank.catalog.features_at(missing)
        assert set(feats.attributes["brand"]) == {None} and not feats.vectors.any()
        requests = _requests(eng)
        aligned = _run_all(eng, requests)
        served = {i for r in aligned for i in json.loads(r)[0]}
        assert served & dropped  # the lists do show items the snapshots lack
        by_id = _run_all(_by_id(eng), requests)
        for req, a, b in zip(requests, aligned, by_id, strict=True):
            assert a == b, (req["query"], req["state"])
    finally:
        eng.close()


def test_rank_stage_aligned_to_a_table_with_other_items(engine):
    """Stage level: a table with items the snapshot lacks, and without some it has; scored by
    table rows, by id, or by the snapshot as loaded: the same."""
    raw = load_serving_ranker(engine.path)
    ids = engine.catalog.ids.tolist()
    table = ["new-1", *ids[5:], "new-2"]
    row = {i: r for r, i in enumerate(table)}

    def lookup(items: list[str]) -> np.ndarray:
        return np.array([row.get(i, -1) for i in items], dtype=np.int64)

    snapshot = raw.item_cols["item_id"].tolist()
    aligned = raw.aligned_to(table, lookup=lookup)
    assert aligned.n_rows == len(table) and raw.n_rows == len(ids)
    assert aligned.rows(["new-1", ids[0], ids[7]]).tolist() == [-1, -1, row[ids[7]]]
    state = RecentActions(clicks=tuple(ids[:3]))
    query = str(engine.catalog.columns["title"][9])
    # (ids[:5], not in the table, are unknown to the aligned stage: nothing asks for them)
    for cands in (ids[5:60], [*ids[5:40], "new-2", ids[41]]):
        rows = lookup(cands)
        a, fa = aligned.score(cands, query=query, market=None, state=state, rows=rows,
                              now_ms=NOW_MS)
        b, fb = aligned.score(cands, query=query, market=None, state=state, now_ms=NOW_MS)
        c, fc = raw.score(cands, query=query, market=None, state=state, now_ms=NOW_MS)
        assert a.tobytes() == b.tobytes() == c.tobytes()
        for name in fc:
            x, y = np.asarray(fa[name]).tolist(), np.asarray(fc[name]).tolist()
            assert json.dumps(x, default=str) == json.dumps(y, default=str), name
    assert raw.item_cols["item_id"].tolist() == snapshot  # the loaded stage is unchanged


def test_rerank_catalog_aligned_to_a_table_with_other_items(engine):
    artifact = engine.path
    vectors = load_vectors(artifact / "embeddings", "item")
    raw = RerankPipeline.load(artifact / "rerank", vectors=vectors).catalog
    ids = engine.catalog.ids.tolist()
    table = ["new-1", *ids[5:], "new-2"]
    row = {i: r for r, i in enumerate(table)}

    def lookup(items: list[str]) -> np.ndarray:
        return np.array([row.get(i, -1) for i in items], dtype=np.int64)

    aligned = raw.aligned_to(table, lookup=lookup, vectors=vectors.aligned_to(table))
    cands = [*ids[5:60], "new-2", ids[61], "nowhere"]
    want = raw.features(cands)
    for got in (aligned.features(cands), aligned.features_at(lookup(cands))):
        assert got.attributes == want.attributes
        np.testing.assert_array_equal(got.vectors, want.vectors)
    assert aligned.rows([ids[0]]).tolist() == [-1]  # not in the table: nothing asks for it
    assert aligned.attributes["brand"][row[ids[8]]] == raw.features([ids[8]]).attributes[
        "brand"][0]
