"""The vector candidate source: query = recency-weighted mean of recent clicks, market-filtered."""

from __future__ import annotations

import numpy as np

from funnel.recall.base import CandidateSource, RecallRequest
from funnel.recall.vector_index import VectorIndex
from funnel.recall.vector_source import VectorSource
from funnel.vectors import VectorTable

from .conftest import planted


def make_source() -> tuple[VectorSource, list[str], dict]:
    ids, x, attrs, _ = planted(n=800, d=8, n_clusters=8, noise=0.1)
    index = VectorIndex(kind="hnsw").fit(ids, x, attrs)
    return VectorSource(index, VectorTable(ids=ids, vectors=x)), ids, attrs


def test_candidates_come_from_the_recent_items_cluster_and_market():
    source, ids, attrs = make_source()
    assert isinstance(source, CandidateSource)
    table = source.vectors
    recent = [ids[0], ids[1]]
    out = source.candidates(RecallRequest(recent_items=recent, market="rome", k=20,
                                          filters={"price_band": "mid"}))
    assert len(out) == 20 and not set(recent) & set(out.item_ids.tolist())
    row = table.index()
    assert {attrs["market"][row[i]] for i in out.item_ids.tolist()} == {"rome"}
    # the query is the normalized mean with the most recent click at weight 1, the one before 0.7
    qv = source.query_vector(recent)
    assert qv is not None and abs(np.linalg.norm(qv) - 1.0) < 1e-5
    expected = 0.7 * table.vectors[0] + table.vectors[1]
    np.testing.assert_allclose(qv, expected / np.linalg.norm(expected), rtol=1e-5)


def test_no_known_recent_items_gives_no_candidates():
    source, _, _ = make_source()
    assert len(source.candidates(RecallRequest(recent_items=["unknown"]))) == 0
    assert len(source.candidates(RecallRequest())) == 0
