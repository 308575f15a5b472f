"""The serving ranker sees the session window training rows were replayed with (review finding:
the server keeps 50 actions per user, training replays ``recent_k``)."""

from __future__ import annotations

from funnel.features.personalization import RecentActions, clip_state, observe


def test_clip_state_equals_replaying_with_the_training_window():
    long_state, short_state = RecentActions(max_len=50), RecentActions(max_len=10)
    for t in range(40):
        for kind in ("impression", "click", "booking"):
            kwargs = {"ts_ms": t, "request_id": f"r{t}", "position": 1, "dwell_ms": 90_000}
            long_state = observe(long_state, kind, f"i{t}", **kwargs)
            short_state = observe(short_state, kind, f"i{t}", **kwargs)
    assert clip_state(long_state, 10) == short_state
    assert clip_state(short_state, 10) is short_state
