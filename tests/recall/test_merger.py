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
