"""The session in progress inside a week-long online state (funnel.features.session_window)."""

from __future__ import annotations

from funnel.features.personalization import RecentActions, observe
from funnel.features.session_window import (
    SESSION_GAP_MS,
    earlier_clicks,
    session_start_ms,
    session_state,
)

MIN = 60_000


def _state(events: list[tuple[str, str, int]]) -> RecentActions:
    state = RecentActions(max_len=50)
    for kind, item, ts in events:
        state = observe(state, kind, item, ts_ms=ts, dwell_ms=90_000 if item == "long" else None)
    return state


def test_the_session_in_progress_is_cut_at_the_last_gap() -> None:
    state = _state([("click", "old1", 0), ("booking", "old1", 5 * MIN), ("click", "a", 100 * MIN),
                    ("click", "long", 110 * MIN), ("booking", "b", 120 * MIN)])
    assert session_start_ms(state, 125 * MIN) == 100 * MIN
    now = session_state(state, 125 * MIN)
    assert now.clicks == ("a", "long") and now.bookings == ("b",)
    assert now.long_clicks == (("long", 110 * MIN + MIN),)
    assert state.clicks == ("old1", "a", "long")  # the user's state itself is untouched


def test_a_request_after_the_gap_opens_a_new_session_and_no_times_keep_everything() -> None:
    state = _state([("click", "a", 0), ("click", "b", MIN)])
    later = MIN + SESSION_GAP_MS + 1
    assert session_start_ms(state, later) == later
    assert session_state(state, later).clicks == ()
    assert session_state(state, MIN + SESSION_GAP_MS) is state  # within the gap: all of it
    assert session_state(state, None) is state  # no request time: the whole state
    no_times = RecentActions(clicks=("a", "b"))  # e.g. a state stored before times were kept
    assert session_state(no_times, later) is no_times


def test_earlier_clicks_are_the_state_before_the_session_in_progress() -> None:
    state = _state([("click", "old1", 0), ("booking", "old1", 5 * MIN), ("click", "old2", 6 * MIN),
                    ("click", "a", 100 * MIN), ("click", "old2", 101 * MIN)])
    now = session_state(state, 105 * MIN)
    assert earlier_clicks(state, now) == ("old1", "old2")  # clicks only, oldest first
    later = 101 * MIN + SESSION_GAP_MS + 1  # a new session: every click is an earlier one
    assert earlier_clicks(state, session_state(state, later)) == (
        "old1", "old2", "a", "old2")
    whole = session_state(state, None)  # no request time: cannot tell, offer nothing
    assert earlier_clicks(state, whole) == ()
    one = _state([("click", "a", 0), ("click", "b", MIN)])  # one session only
    assert earlier_clicks(one, session_state(one, 2 * MIN)) == ()
