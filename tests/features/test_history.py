"""The behaviour-sequence columns (``hist_*``): by hand, through the state store, and the same
in a training row as at serving for the same history (issue 18, item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.data.store import memory_store
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.features.history import AGE_LABELS, HISTORY_COLUMNS, age_bucket, history_columns
from funnel.features.personalization import RecentActions, observe
from funnel.features.training_set import TrainingSetConfig, build_training_set
from funnel.rank.serving import ServingRanker
from funnel.serve.state import _decode, _encode, apply_events


def _session() -> RecentActions:
    """Three items shown; the third clicked (long dwell) at t=10 s, so the two above are
    skipped; a booking at t=100 s."""
    s = RecentActions(max_len=50)
    for pos, item in enumerate(("a", "b", "c"), start=1):
        s = observe(s, "impression", item, ts_ms=0, request_id="r", position=pos)
    s = observe(s, "click", "c", ts_ms=10_000, dwell_ms=90_000, request_id="r", position=3)
    return observe(s, "booking", "c", ts_ms=100_000)


def test_history_by_hand() -> None:
    s = _session()
    assert s.actions == (("a", "skip", 10_000, 0), ("b", "skip", 10_000, 0),
                         ("c", "click", 10_000, 70_000), ("c", "booking", 100_000, 0))
    at = history_columns(s, now_ms=60_000, n=20)  # before the booking, dwell not yet 60 s
    assert at == {"hist_items": ["a", "b", "c"], "hist_kinds": ["skip", "skip", "click"],
                  "hist_ages": ["age0"] * 3}  # 50 s ago: within the minute
    later = history_columns(s, now_ms=100_001 + 3_600_000, n=2)  # the last two, an hour on
    assert later == {"hist_items": ["c", "c"], "hist_kinds": ["long_click", "booking"],
                     "hist_ages": ["age3", "age3"]}
    assert history_columns(s, None)["hist_kinds"][-2:] == ["long_click", "booking"]
    assert history_columns(RecentActions(), 5) == {c: [] for c in HISTORY_COLUMNS}
    assert [age_bucket(ms) for ms in (-5, 0, 60_000, 60_001, 10**12)] == [
        "age0", "age0", "age0", "age1", AGE_LABELS[-1]]
    with pytest.raises(ValueError, match="n must be a positive int"):
        history_columns(s, 0, n=0)


def test_state_store_keeps_the_sequence_and_reads_old_json() -> None:
    s = _session()
    assert s.tally == (("a", 1, 0), ("b", 1, 0), ("c", 1, 1))
    assert _decode(_encode(s), 50) == s
    old = '{"clicks":["c"],"long_clicks":[],"skips":[],"bookings":[],"shown":[],"max_len":50}'
    assert _decode(old, 50).actions == () == _decode(old, 50).tally  # before the fields


def test_training_rows_and_serving_encode_the_same_history() -> None:
    """Each impression's ``hist_*`` columns in a training row equal what the served ranker
    computes from the server's state (events folded by ``apply_events``) at that time."""
    tables = generate_tables(MarketplaceConfig(n_events=6_000, seed=3))
    con = memory_store({name: tables[name] for name in ("events", "items")})
    table = build_training_set(con, TrainingSetConfig(history_len=12)).to_pydict()
    events = con.sql(
        "SELECT user_id, epoch_ms(ts) AS ts_ms, event_type, item_id, request_id, position, "
        "dwell_ms, event_id FROM events WHERE item_id IS NOT NULL AND event_type IN "
        "('impression', 'click', 'booking') ORDER BY user_id, ts, event_type != 'impression', "
        "event_id").to_arrow_table().to_pylist()
    items = tables["items"].to_pydict()
    n_items = len(items["item_id"])
    item_cols = {c: np.asarray(items[c], dtype=object) for c in
                 ("item_id", "title", "category", "brand", "market")}
    for c in ("price", "bid", "item_imps_before", "item_clicks_before", "item_bookings_before",
              "item_ctr_before"):
        item_cols[c] = np.asarray(items.get(c, np.zeros(n_items)), dtype=np.float64)
    serving = ServingRanker(
        ranker=None, calibrator=None, vectors=None, recent_k=10, position=1,  # type: ignore[arg-type]
        item_row={i: r for r, i in enumerate(items["item_id"])}, item_cols=item_cols,
        history_len=12)
    row = {e: k for k, e in enumerate(table["event_id"])}
    state: dict[str, RecentActions] = {}
    checked = long = 0
    k = 0
    while k < len(events):  # one (user, ts) group at a time: impressions see only the past
        user, ts_ms = events[k]["user_id"], events[k]["ts_ms"]
        group = [e for e in events[k : k + 200] if e["user_id"] == user and e["ts_ms"] == ts_ms]
        k += len(group)
        now = state.get(user, RecentActions(max_len=50))
        imps = [e for e in group if e["event_type"] == "impression" and e["event_id"] in row]
        if imps:
            online = serving.columns([e["item_id"] for e in imps], query="", market=None,
                                     state=now, now_ms=ts_ms)
            for j, e in enumerate(imps):
                for name in HISTORY_COLUMNS:
                    assert list(online[name][j]) == table[name][row[e["event_id"]]], name
                checked += 1
                long += "long_click" in table["hist_kinds"][row[e["event_id"]]]
        state[user] = apply_events(now, group)
    lengths = [len(h) for h in table["hist_items"]]
    assert checked == len(table["event_id"])
    assert max(lengths) == 12 and np.mean(lengths) > 3  # cut at history_len, and lived in
    kinds = {k for h in table["hist_kinds"] for k in h}
    assert kinds >= {"click", "skip", "booking"} and long > 0
