"""The merger as the server runs it: inline in-memory sources, pooled blocking ones with a
deadline, and a hung source that cannot take the pool with it."""

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
        self.threads: list[str] = []

    def candidates(self, request: RecallRequest) -> Candidates:
        self.threads.append(threading.current_thread().name)
        ids = self.ids[: request.k]
        return Candidates(np.array(ids, dtype=object),
                          np.arange(len(ids), 0, -1).astype(np.float32))


class Hung:
    name = "hung"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def candidates(self, request: RecallRequest) -> Candidates:
        self.calls += 1
        self.release.wait(10.0)
        return Candidates(np.array(["late"], dtype=object), np.ones(1, np.float32))


class Broken:
    name = "broken"

    def candidates(self, request: RecallRequest) -> Candidates:
        raise RuntimeError("index file is corrupt")


def test_inline_sources_run_on_the_callers_thread_with_the_same_fusion():
    a, b = Fixed("a", ["x", "y", "z"]), Fixed("b", ["y", "w"])
    inline = Merger([a, b], quotas={"a": 2}, inline=("a", "b"))
    pooled = Merger([Fixed("a", ["x", "y", "z"]), Fixed("b", ["y", "w"])], quotas={"a": 2})
    got, want = inline.recall(RecallRequest(k=10)), pooled.recall(RecallRequest(k=10))
    pooled.close()
    assert got.item_ids.tolist() == want.item_ids.tolist() == ["y", "x", "w"]
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_allclose(got.scores, [1 / 62 + 1 / 61, 1 / 61, 1 / 62], rtol=1e-6)
    assert got.provenance == want.provenance == [{"a": 1.0, "b": 2.0}, {"a": 2.0}, {"b": 1.0}]
    me = threading.current_thread().name
    assert a.threads == [me] and b.threads == [me]
    assert inline._pool is None  # nothing was handed to a pool


def test_a_broken_inline_source_is_skipped_not_raised(caplog):
    merger = Merger([Fixed("a", ["x"]), Broken()], inline=("a", "broken"))
    with caplog.at_level(logging.WARNING, logger="funnel.recall.merger"):
        out = merger.recall(RecallRequest(k=5))
    assert out.item_ids.tolist() == ["x"]
    assert out.skipped == {"broken": "RuntimeError: index file is corrupt"}
    assert "recall source 'broken' skipped" in caplog.text


def test_a_hung_source_holds_at_most_max_in_flight_threads():
    hung = Hung()
    merger = Merger([Fixed("a", ["x"]), hung], inline=("a",), timeout_s=0.05, max_in_flight=2)
    try:
        reasons = []
        for _ in range(5):
            start = time.perf_counter()
            out = merger.recall(RecallRequest(k=5))
            assert out.item_ids.tolist() == ["x"]
            assert time.perf_counter() - start < 1.0
            reasons.append(out.skipped["hung"])
        assert reasons[:2] == ["timed out after 50 ms"] * 2
        assert reasons[2:] == ["busy: 2 earlier calls still running"] * 3
        assert hung.calls == 2  # later requests did not queue more work behind it
        hung.release.set()
        deadline = time.perf_counter() + 5.0
        while merger._busy["hung"] and time.perf_counter() < deadline:
            time.sleep(0.01)
        out = merger.recall(RecallRequest(k=5))
        assert out.skipped == {} and set(out.item_ids.tolist()) == {"x", "late"}
    finally:
        hung.release.set()
        merger.close()


def test_bad_inline_and_in_flight_settings_are_rejected():
    with pytest.raises(ValueError, match=r"inline names unknown source\(s\) \['c'\]"):
        Merger([Fixed("a", [])], inline=("c",)).recall(RecallRequest())
    with pytest.raises(ValueError, match="'max_in_flight' parameter must be an int >= 1. Got 0"):
        Merger([Fixed("a", [])], max_in_flight=0).recall(RecallRequest())
