"""The server's fast paths change nothing: the same ids, scores, kinds and debug values as the
reference paths (pairwise query match, every field encoded per candidate, recall sources on
the thread pool, candidate lookups by id) on fixed requests."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from funnel.features.personalization import RecentActions
from funnel.features.query_match import query_match_features
from funnel.recall.merger import Merger
from funnel.serve.engine import MATCH_COLUMNS, Engine


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


def test_fast_paths_give_identical_results(engine, monkeypatch):
    requests = _requests(engine)
    fast = _run_all(engine, requests)
    assert sum(len(ids) for ids, *_ in fast) > 200  # the requests do return lists

    rank = engine.rank
    text = ("title", "category", "brand", "market")
    monkeypatch.setattr(engine, "terms", PairwiseTerms(
        [engine.catalog.columns[c].tolist() for c in MATCH_COLUMNS]))
    monkeypatch.setattr(rank, "term_index", PairwiseTerms(
        [rank.item_cols[c].tolist() for c in text]))
    monkeypatch.setattr(rank, "item_codes", {})  # every cross field encoded per candidate
    monkeypatch.setattr(engine, "rank_rows", None)  # rows looked up by id in the ranker
    reference_encode = rank.ranker.features_.encode_fields

    def encode_every_row(cols, rows):
        names = [s.name for s in rank.ranker.features_.specs if s.name not in rank.item_parts]
        return reference_encode(cols, names)

    monkeypatch.setattr(rank, "_encode_request_fields", encode_every_row)
    old = engine.recall.merger
    pooled = Merger(old.sources, quotas=old.quotas, timeout_s=old.timeout_s)
    monkeypatch.setattr(engine.recall, "merger", pooled)
    try:
        slow = _run_all(engine, requests)
    finally:
        pooled.close()
    assert len(slow) == len(fast)
    for req, a, b in zip(requests, fast, slow, strict=True):
        # through JSON, as the server sends it (debug holds NaN for missing bids)
        assert json.dumps(a, default=str) == json.dumps(b, default=str), req["query"]


def test_rank_rows_must_align_with_the_ids(engine):
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
