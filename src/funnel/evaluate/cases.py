"""Held-out requests, each with the user's online state at that moment.

Every user's events are replayed in time order through
:func:`funnel.features.personalization.observe` (the transition the server's state store applies
on ``POST /events``), and at each held-out moment the state *before* it is kept:

- ``search``: one per held-out request id that got at least one click (the request's query,
  market, logged impressions with their true ``p_click`` when known); targets = clicked items.
- ``booking``: one per held-out booking; the moment is the first click on the booked item in
  the same session (so the click itself does not leak), with the session's last query so far.
  When that click belongs to a logged request, the state is the one the request was served
  with (before its own impressions, as the server ranked it), not the one at the click.
- ``next_click``: one per held-out click outside any logged request (browse logs without
  searches), given the earlier clicks of its session; the target is the clicked item.

Impression-only requests are kept in ``requests`` for the ranker's held-out metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import numpy as np

from funnel.data.store import EventStore
from funnel.features.personalization import STATE_WINDOW, RecentActions, observe

KINDS = ("search", "booking", "next_click")


@dataclass(frozen=True)
class Case:
    """One held-out moment to ask the funnel about."""

    kind: str
    user_id: str
    ts_ms: int
    query: str
    market: str | None
    state: RecentActions
    targets: tuple[str, ...]
    request_id: str | None = None
    impressions: tuple[tuple[str, int, float | None], ...] = ()
    """(item, logged position, true p_click or None), in position order."""


@dataclass
class HeldOut:
    """Every held-out case, by kind, plus impression requests for the ranker."""

    cases: dict[str, list[Case]] = field(default_factory=lambda: {k: [] for k in KINDS})
    requests: list[Case] = field(default_factory=list)
    n_events: int = 0
    n_users: int = 0
    has_truth: bool = False

    def sample(self, max_cases: int | None, seed: int) -> HeldOut:
        """At most ``max_cases`` of each kind (and of requests), drawn without replacement."""
        if max_cases is None:
            return self
        rng = np.random.default_rng(seed)

        def pick(rows: list[Case]) -> list[Case]:
            if len(rows) <= max_cases:
                return rows
            keep = np.sort(rng.choice(len(rows), max_cases, replace=False))
            return [rows[i] for i in keep]

        return HeldOut({k: pick(v) for k, v in self.cases.items()}, pick(self.requests),
                       self.n_events, self.n_users, self.has_truth)



_EVENTS_SQL = """
SELECT e.user_id, epoch_ms(e.ts) AS ts_ms, e.event_type, e.item_id, e.query, e.request_id,
       e.position, e.market, e.dwell_ms, {p_click} AS p_click
FROM events e {join}
WHERE e.user_id IN (SELECT DISTINCT user_id FROM events WHERE epoch_ms(ts) >= {split})
ORDER BY e.user_id, e.ts,
         CASE e.event_type WHEN 'search' THEN 0 WHEN 'impression' THEN 1 ELSE 2 END, e.event_id
"""


def _rows(con: duckdb.DuckDBPyConnection, split_ms: int) -> tuple[dict[str, list], bool]:
    truth = EventStore(con).has_table("truth") and bool(
        con.execute("SELECT count(*) FROM truth").fetchall()[0][0])
    sql = _EVENTS_SQL.format(
        p_click="t.p_click" if truth else "CAST(NULL AS DOUBLE)",
        join="LEFT JOIN truth t USING (event_id)" if truth else "", split=int(split_ms))
    return con.sql(sql).to_arrow_table().to_pydict(), truth


def _users(n: int, users: list[str]) -> Iterator[tuple[int, int]]:
    j = 0
    while j < n:
        k = j
        while k < n and users[k] == users[j]:
            k += 1
        yield j, k
        j = k


def held_out_cases(con: duckdb.DuckDBPyConnection, split_ms: int, *,
                   gap_minutes: float = 30.0,
                   max_actions: int = STATE_WINDOW) -> HeldOut:
    """Replay the store's events and collect every held-out case (see module docstring)."""
    ev, truth = _rows(con, split_ms)
    n = len(ev["user_id"])
    gap = int(gap_minutes * 60_000)
    out = HeldOut(has_truth=truth)
    users = ev["user_id"]
    for start, stop in _users(n, users):
        state = RecentActions(max_len=max_actions)
        last_ts: int | None = None
        session_query = ""
        first_click: dict[str, tuple[RecentActions, str, int]] = {}
        served_with: dict[str, RecentActions] = {}  # request id -> state when it was served
        open_req: dict[str, dict] = {}
        held = False
        for r in range(start, stop):
            ts, kind, item = int(ev["ts_ms"][r]), ev["event_type"][r], ev["item_id"][r]
            req, market = ev["request_id"][r], ev["market"][r]
            if kind != "impression":
                if last_ts is not None and ts - last_ts > gap:
                    session_query, first_click = "", {}
                last_ts = ts
            if ts >= split_ms:
                held = True
                out.n_events += 1
                if req is not None and req not in open_req and kind in ("search", "impression"):
                    open_req[req] = {"ts": ts, "state": state, "query": "", "market": market,
                                     "imps": [], "clicks": []}
                if req is not None and req in open_req:
                    slot = open_req[req]
                    if kind == "search":
                        slot["query"] = ev["query"][r] or ""
                    elif kind == "impression" and item is not None:
                        slot["imps"].append((item, int(ev["position"][r] or 0),
                                             ev["p_click"][r]))
                    elif kind == "click" and item is not None and item not in slot["clicks"]:
                        slot["clicks"].append(item)
                    slot["market"] = slot["market"] or market
                if kind == "click" and item is not None and (req is None or req not in open_req):
                    prev = list(state.clicks[-1:])
                    if first_click and prev and prev[0] != item:
                        out.cases["next_click"].append(Case(
                            "next_click", users[r], ts, "", market, state, (item,)))
                if kind == "booking" and item is not None:
                    snap, query, at = first_click.get(item, (state, session_query, ts))
                    out.cases["booking"].append(Case(
                        "booking", users[r], at, query, market, snap, (item,)))
            if kind == "search":
                session_query = ev["query"][r] or ""
            if req is not None and req not in served_with and kind in ("search", "impression"):
                served_with[req] = state
            if kind == "click" and item is not None and item not in first_click:
                first_click[item] = (served_with.get(req, state) if req is not None else state,
                                     session_query, ts)
            if kind in ("impression", "click", "booking") and item is not None:
                state = observe(state, kind, item, ts_ms=ts, dwell_ms=ev["dwell_ms"][r],
                                request_id=req, position=ev["position"][r])
        out.n_users += int(held)
        for req, slot in open_req.items():
            imps = tuple(sorted(slot["imps"], key=lambda x: x[1]))
            case = Case("search", users[start], slot["ts"], slot["query"], slot["market"],
                        slot["state"], tuple(slot["clicks"]), req, imps)
            if imps:
                out.requests.append(case)
            if slot["clicks"]:
                out.cases["search"].append(case)
    for rows in (*out.cases.values(), out.requests):
        rows.sort(key=lambda c: (c.ts_ms, c.user_id, c.request_id or "", c.targets))
    return out
