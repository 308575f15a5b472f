"""The user's own earlier items as a recall source, and the merger's per-source weights."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.recall.base import RecallRequest
from funnel.recall.build import RecallConfig, load_recall
from funnel.recall.history import UserHistory
from funnel.recall.merger import Merger
from recall.test_merger import Fixed


def test_history_ranks_by_clicks_then_recency_and_skips_the_session() -> None:
    request = RecallRequest(earlier_items=("a", "b", "c", "b", "d", "a", "e"),
                            recent_items=("d",), k=10)
    out = UserHistory().candidates(request)
    # a and b twice (a more recent), then e, c by recency; d is in the session
    assert out.item_ids.tolist() == ["a", "b", "e", "c"]
    assert out.scores.tolist() == [2.0, 2.0, 1.0, 1.0]
    once_each = RecallRequest(earlier_items=("a", "b"), k=1)
    assert UserHistory().candidates(once_each).item_ids.tolist() == ["b"]  # the more recent


def test_history_answers_only_a_returning_users_browse_feed() -> None:
    assert len(UserHistory().candidates(RecallRequest(k=10))) == 0  # anonymous: nothing
    searched = RecallRequest(query="loft", earlier_items=("a",), k=10)
    assert len(UserHistory().candidates(searched)) == 0  # a search: the query decides


def test_weights_scale_a_sources_reciprocal_rank() -> None:
    a, b = Fixed("a", ["x", "y"]), Fixed("b", ["z"])
    plain = Merger([a, b]).recall(RecallRequest(k=10))
    assert plain.item_ids.tolist() == ["x", "z", "y"]  # x and z tie at 1/61: ids break it
    weighted = Merger([a, b], weights={"b": 3.0}).recall(RecallRequest(k=10))
    assert weighted.item_ids.tolist() == ["z", "x", "y"]
    np.testing.assert_allclose(weighted.scores, [3 / 61, 1 / 61, 1 / 62], rtol=1e-6)
    for bad in (0.0, -1.0, "2"):
        with pytest.raises(ValueError, match="'weights' must be positive numbers"):
            Merger([a], weights={"a": bad})  # type: ignore[dict-item]


def test_the_served_recall_carries_the_history_source_with_its_weight(tmp_path) -> None:
    root = tmp_path / "recall"
    root.mkdir()
    (root / "config.json").write_text('{"quota_history": 20, "weight_history": 2.5}')
    bundle = load_recall(tmp_path)
    assert isinstance(bundle.sources["history"], UserHistory)
    assert bundle.merger.quotas == {"history": 20} and bundle.merger.weights == {"history": 2.5}
    (root / "config.json").write_text('{"quota_history": 0}')
    assert "history" not in load_recall(tmp_path).sources
    assert RecallConfig().quota_history > 0  # on by default

