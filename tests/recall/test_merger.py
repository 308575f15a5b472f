"""The merger: quotas, dedupe, provenance, timings, and graceful degradation."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.merger import Merger


class Fixed:
    def __init__(self, name: str, ids: list[str]) -> None:
        self.name = name
        self.ids = ids
        self.seen_k: list[int] = []

    def candidates(self, request: RecallRequest) -> Candidates:
        self.seen_k.append(request.k)
        ids = self.ids[: request.k]
        return Candidates(np.array(ids, dtype=object),
                          np.arange(len(ids), 0, -1).astype(np.float32))


class Broken:
    name = "broken"

    def candidates(self, request: RecallRequest) -> Candidates:
        raise RuntimeError("index file is corrupt")


class Slow:
    name = "slow"

    def __init__(self) -> None:
        self.release = threading.Event()

    def candidates(self, request: RecallRequest) -> Candidates:
        self.release.wait(5.0)
        return Candidates(np.array(["late"], dtype=object), np.ones(1, np.float32))


def test_quotas_dedupe_and_provenance():
    a, b = Fixed("a", ["x", "y", "z"]), Fixed("b", ["y", "w"])
    merger = Merger([a, b], quotas={"a": 2})
    out = merger.recall(RecallRequest(k=10))
    # RRF with k=60: y = 1/62 + 1/61, x = 1/61, w = 1/62; z is beyond a's quota
    assert out.item_ids.tolist() == ["y", "x", "w"]
    np.testing.assert_allclose(out.scores, [1 / 62 + 1 / 61, 1 / 61, 1 / 62], rtol=1e-6)
    assert out.provenance == [{"a": 1.0, "b": 2.0}, {"a": 2.0}, {"b": 1.0}]  # a was asked for 2
    assert a.seen_k == [2] and b.seen_k == [300]  # each source is asked for its quota
    assert set(out.timings_ms) == {"a", "b"} and out.skipped == {}
    assert merger.recall(RecallRequest(k=1)).item_ids.tolist() == ["y"]
    merger.close()


def test_failing_and_slow_sources_are_skipped_with_a_warning(caplog):
    slow = Slow()
    merger = Merger([Fixed("a", ["x"]), Broken(), slow], timeout_s=0.1)
    with caplog.at_level(logging.WARNING, logger="funnel.recall.merger"):
        start = time.perf_counter()
        out = merger.recall(RecallRequest(k=5))
        elapsed = time.perf_counter() - start
    slow.release.set()
    merger.close()
    assert out.item_ids.tolist() == ["x"]
    assert elapsed < 1.0
    assert out.skipped == {
        "broken": "RuntimeError: index file is corrupt", "slow": "timed out after 100 ms",
    }
    assert "recall source 'broken' skipped" in caplog.text
    assert "recall source 'slow' skipped: timed out" in caplog.text


def test_all_sources_failing_gives_an_empty_result_not_an_error():
    out = Merger([Broken()]).recall(RecallRequest())
    assert len(out) == 0 and "broken" in out.skipped


def test_bad_configuration_is_rejected():
    with pytest.raises(TypeError, match="must implement CandidateSource"):
        Merger([object()]).recall(RecallRequest())  # type: ignore[list-item]
    with pytest.raises(ValueError, match="source names must be unique"):
        Merger([Fixed("a", []), Fixed("a", [])]).recall(RecallRequest())
    with pytest.raises(ValueError, match=r"quotas name unknown source\(s\) \['c'\]"):
        Merger([Fixed("a", [])], quotas={"c": 1}).recall(RecallRequest())


def _catalog(ids: list[str]) -> tuple[object, np.ndarray]:
    row = {item: r for r, item in enumerate(ids)}
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(np.asarray(ids, dtype=str), kind="stable")] = np.arange(len(ids))

    def rows(items: list[str]) -> np.ndarray:
        return np.array([row.get(i, -1) for i in items], dtype=np.int64)

    return rows, rank


def test_catalog_keys_give_the_same_list_and_its_rows():
    # ties everywhere: rank r in one source only scores the same in every source
    catalog = [f"i{n:03d}" for n in range(200)][::-1]  # rows not in id order
    rng = np.random.default_rng(0)
    perm = rng.permutation(catalog).tolist()
    sources = [Fixed("a", perm[:80]), Fixed("b", perm[60:140]), Fixed("c", perm[130:170])]
    plain = Merger(sources)
    keyed = Merger(sources)
    rows_of, rank = _catalog(catalog)
    keyed.use_catalog(rows_of, rank)
    for k in (1, 7, 150, 1000):
        a, b = plain.recall(RecallRequest(k=k)), keyed.recall(RecallRequest(k=k))
        assert a.item_ids.tolist() == b.item_ids.tolist()
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.provenance == b.provenance and a.rows is None
        assert b.rows.tolist() == [catalog.index(i) for i in b.item_ids.tolist()]
    ties = plain.recall(RecallRequest(k=1000)).scores
    assert len(np.unique(ties)) < 0.75 * len(ties)  # the tie-break did decide the order


def test_ids_outside_the_catalog_take_the_path_by_id():
    catalog = ["b", "a", "c"]
    merger = Merger([Fixed("x", ["a", "zz", "b"]), Fixed("y", ["c", "a"])])
    merger.use_catalog(*_catalog(catalog))
    out = merger.recall(RecallRequest(k=10))
    assert out.rows is None  # "zz" has no row
    assert out.item_ids.tolist() == ["a", "c", "zz", "b"]  # 1/61 + 1/62, 1/61, 1/62, 1/63


def test_catalog_id_rank_must_be_integers():
    merger = Merger([Fixed("x", ["a"])])
    with pytest.raises(ValueError, match=r"'id_rank' must be a 1-D integer array .* got shape "
                                         r"\(2,\), dtype float64"):
        merger.use_catalog(lambda ids: np.zeros(len(ids), np.int64), np.array([0.0, 1.0]))
