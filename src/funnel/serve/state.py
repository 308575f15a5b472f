"""Online session state: each user's recent actions, updated in real time by POST /events.

One interface, two backends chosen by URL: ``memory://`` (in-process, LRU-bounded) and
``redis://host:port/db`` (shared by workers). Both keep at most ``max_actions`` per list and expire
users after ``ttl_s`` seconds without activity. The state is the ranking stage's
:class:`~funnel.features.personalization.RecentActions`, updated only through its ``observe``,
so serving and training derive personalization features from the same transitions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, replace
from typing import Any, Protocol
from urllib.parse import urlparse

from funnel.exceptions import ConfigError
from funnel.features.personalization import RecentActions, observe


class StateStore(Protocol):
    def get(self, user_id: str) -> RecentActions: ...

    def apply(self, user_id: str, events: list[dict[str, Any]]) -> RecentActions: ...

    def clear(self) -> None: ...


def _encode(state: RecentActions) -> str:
    return json.dumps(asdict(state), separators=(",", ":"))


def _decode(text: str | bytes | None, max_actions: int) -> RecentActions:
    if not text:
        return RecentActions(max_len=max_actions)
    raw = json.loads(text)
    return RecentActions(
        clicks=tuple(raw["clicks"]),
        long_clicks=tuple((i, int(t)) for i, t in raw["long_clicks"]),
        skips=tuple(raw["skips"]),
        bookings=tuple(raw["bookings"]),
        shown=tuple((r, int(p), i) for r, p, i in raw["shown"]),
        user_type=raw.get("user_type"),
        max_len=max_actions,
        actions=tuple(  # absent in states written before the field existed
            (i, k, int(t), int(at)) for i, k, t, at in raw.get("actions", ())),
        tally=tuple((i, int(s), int(c)) for i, s, c in raw.get("tally", ())),  # as "actions"
    )


def apply_events(state: RecentActions, events: list[dict[str, Any]]) -> RecentActions:
    """Fold events (contract dicts, any order) into the state in time order."""
    for ev in sorted(events, key=lambda e: e["ts_ms"]):
        state = observe(
            state,
            ev["event_type"],
            ev.get("item_id"),
            ts_ms=ev["ts_ms"],
            dwell_ms=ev.get("dwell_ms"),
            request_id=ev.get("request_id"),
            position=ev.get("position"),
        )
    return state


class MemoryState:
    """In-process state: a lock-protected LRU of users, each entry with its last-touch time."""

    def __init__(self, max_actions: int = 50, ttl_s: float = 7 * 86400, max_users: int = 200_000):
        self.max_actions = max_actions
        self.ttl_s = ttl_s
        self.max_users = max_users
        self._data: OrderedDict[str, tuple[float, RecentActions]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: str) -> RecentActions:
        now = time.monotonic()
        with self._lock:
            entry = self._data.get(user_id)
            if entry is None or now - entry[0] > self.ttl_s:
                self._data.pop(user_id, None)
                return RecentActions(max_len=self.max_actions)
            return entry[1]

    def apply(self, user_id: str, events: list[dict[str, Any]]) -> RecentActions:
        with self._lock:
            entry = self._data.get(user_id)
            now = time.monotonic()
            state = (
                entry[1]
                if entry and now - entry[0] <= self.ttl_s
                else RecentActions(max_len=self.max_actions)
            )
            state = apply_events(state, events)
            self._data[user_id] = (now, state)
            self._data.move_to_end(user_id)
            while len(self._data) > self.max_users:
                self._data.popitem(last=False)
            return state

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class RedisState:
    """Redis-backed state: one JSON value per user with a TTL, updated with optimistic locking."""

    def __init__(self, url: str, max_actions: int = 50, ttl_s: int = 7 * 86400) -> None:
        try:
            import redis
        except ImportError as err:  # pragma: no cover - redis is an extra
            raise ImportError(
                "Redis state needs the redis extra: pip install 'funnel[redis]'"
            ) from err
        self.client = redis.Redis.from_url(url)
        self.max_actions = max_actions
        self.ttl_s = int(ttl_s)
        self.prefix = "funnel:state:"

    def get(self, user_id: str) -> RecentActions:
        return _decode(self.client.get(self.prefix + user_id), self.max_actions)

    def apply(self, user_id: str, events: list[dict[str, Any]]) -> RecentActions:
        import redis

        key = self.prefix + user_id
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    state = apply_events(_decode(pipe.get(key), self.max_actions), events)
                    pipe.multi()
                    pipe.set(key, _encode(state), ex=self.ttl_s)
                    pipe.execute()
                    return state
                except redis.WatchError:
                    continue

    def clear(self) -> None:
        for key in self.client.scan_iter(self.prefix + "*"):
            self.client.delete(key)


def open_state(url: str, *, max_actions: int, ttl_s: int, max_users: int) -> StateStore:
    """The state store for ``url`` (memory:// or redis://)."""
    scheme = urlparse(url).scheme
    if scheme == "memory":
        return MemoryState(max_actions=max_actions, ttl_s=ttl_s, max_users=max_users)
    if scheme in ("redis", "rediss", "unix"):
        return RedisState(url, max_actions=max_actions, ttl_s=ttl_s)
    raise ConfigError(f"unknown state store {url!r}; expected memory:// or redis://host:port/db")


def with_user_type(state: RecentActions, user_type: str | None) -> RecentActions:
    return state if user_type is None else replace(state, user_type=user_type)
