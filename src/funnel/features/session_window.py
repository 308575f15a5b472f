"""The session in progress inside a user's online state, which spans their sessions.

The server keeps one :class:`~funnel.features.personalization.RecentActions` per user for a
week, so a returning user's first request of a new session carries the clicks of the last one.
Recall from "the last 5 clicks" and the browse feed's "leave out what the session clicked"
are about the session in progress: fed yesterday's clicks they recalled stale neighbours and
hid items the user may come back to (Taobao sample: HR@20 of new-to-session items 0.170 for an
anonymous visitor, 0.069 with the user's earlier sessions in the state). The ranker still reads
the whole state: the user's taste lives in their history.

A session ends after ``SESSION_GAP_MS`` without an action, as ``funnel sessions`` cuts them.
"""

from __future__ import annotations

from dataclasses import replace

from funnel.features.personalization import RecentActions
from funnel.pipeline.sessions import SessionConfig

SESSION_GAP_MS = int(SessionConfig.gap_minutes * 60_000)
"""``funnel sessions``' default gap (``[sessions] gap_minutes``) in milliseconds."""


def session_start_ms(state: RecentActions, now_ms: int | None,
                     gap_ms: int = SESSION_GAP_MS) -> int | None:
    """When the session in progress at ``now_ms`` began (the earliest action of the latest run
    of actions with no gap over ``gap_ms``, the last one within ``gap_ms`` of now); ``now_ms``
    itself when the last action is older than that (a new session); None when times are
    unknown (no ``now_ms``, or a state without action times), i.e. the whole state."""
    if now_ms is None or not state.actions:
        return None
    start = now_ms
    for _item, _kind, ts, _long in reversed(state.actions):
        if start - ts > gap_ms:
            break
        start = min(start, ts)
    return start


def session_state(state: RecentActions, now_ms: int | None,
                  gap_ms: int = SESSION_GAP_MS) -> RecentActions:
    """``state`` cut to the session in progress at ``now_ms`` (see :func:`session_start_ms`);
    ``state`` itself when times are unknown or every action belongs to the session."""
    start = session_start_ms(state, now_ms, gap_ms)
    if start is None or (state.actions and state.actions[0][2] >= start):
        return state
    actions = tuple(a for a in state.actions if a[2] >= start)
    clicks = tuple(item for item, kind, _ts, _long in actions if kind == "click")
    return replace(
        state,
        clicks=clicks,
        skips=tuple(item for item, kind, _ts, _long in actions if kind == "skip"),
        bookings=tuple(item for item, kind, _ts, _long in actions if kind == "booking"),
        long_clicks=tuple((item, long) for item, kind, _ts, long in actions
                          if kind == "click" and long),
        actions=actions,
    )


def earlier_clicks(state: RecentActions, session: RecentActions) -> tuple[str, ...]:
    """The clicks ``state`` holds from before the session in progress (``session``, as
    :func:`session_state` cut it), oldest first: a returning user's earlier sessions, which
    recall may offer again (the user's own history), unlike the session's recent clicks.
    Empty when the state is all one session or its times are unknown."""
    if session is state:
        return ()
    n_before = len(state.actions) - len(session.actions)
    return tuple(item for item, kind, _ts, _long in state.actions[:n_before] if kind == "click")
