"""Training-set builder: labels, point-in-time counters, no leakage, downsampling."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from funnel.embed.types import NEW_USER, ItemTyper, TypeLookup, TypeRules, user_type_of
from funnel.features.personalization import (
    TASTE_FEATURES,
    ItemVectorLookup,
    cooccurrence_vectors,
)
from funnel.features.training_set import TrainingSetConfig, build_training_set

from ._store import EventLog, connect, items_table, random_log, ts


def _lookup(with_types: bool = False) -> ItemVectorLookup:
    ids, vec = cooccurrence_vectors([[f"i{k}", f"i{(k + 1) % 12}"] for k in range(12)], dim=4)
    return ItemVectorLookup(ids, vec, types=_types() if with_types else None)


def _types() -> TypeLookup:
    """Types of the hand-made catalog (price bands per market by hand), random vectors for
    every item type and every user type reachable with <= 10 bookings."""
    rules = TypeRules()
    edges = {"m0": [13.0, 17.0], "m1": [14.0, 18.0]}
    catalog = items_table().to_pylist()
    typer = ItemTyper(rules, edges)
    names = {typer.type_of(r) for r in catalog} | {NEW_USER}
    for m in ("m0", "m1"):
        for band in range(3):
            for n in range(1, 11):
                names.add(user_type_of(rules, [{"market": m, "price_band": band}] * n))
    names = sorted(names)
    vec = np.random.default_rng(0).normal(size=(len(names), 4))
    return TypeLookup.from_parts(rules, edges, catalog, names, vec)


def test_labels_and_counters_by_hand() -> None:
    log = EventLog()
    log.add(0, "u1", "impression", "i1", request="r1", position=1)
    log.add(0, "u1", "impression", "i2", request="r1", position=2)
    log.add(1, "u1", "click", "i2", request="r1", dwell_ms=90_000)
    log.add(2, "u1", "booking", "i2")
    log.add(10, "u2", "impression", "i2", request="r2", position=1)  # i2 seen 1x, clicked 1x
    log.add(10, "u2", "impression", "i1", request="r2", position=2)
    log.add(50, "u2", "click", "i1", request="r9")  # other request: not a click of r2's i1
    log.add(60, "u1", "impression", "i2", request="r3", position=1)
    t = build_training_set(connect(log.table())).to_pydict()
    assert t["event_id"] == ["e00000", "e00001", "e00004", "e00005", "e00007"]
    assert t["click"] == [False, True, False, False, False]
    assert t["booking"] == [False, True, False, False, False]
    assert t["item_imps_before"] == [0, 0, 1, 1, 2]
    assert t["item_clicks_before"] == [0, 0, 1, 0, 1]
    assert t["item_bookings_before"] == [0, 0, 1, 0, 1]
    assert t["user_imps_before"] == [0, 0, 0, 0, 2]
    assert t["user_clicks_before"] == [0, 0, 0, 0, 1]
    assert t["recent_clicks"] == [[], [], [], [], ["i2"]]
    assert t["position"] == [1, 2, 1, 2, 1]
    assert t["category"][0] == "c1" and t["price"][0] == 11.0


def _rows_before(table: pa.Table, cutoff_minute: float) -> dict:
    d = table.to_pydict()
    keep = [i for i, t in enumerate(d["ts"]) if t < ts(cutoff_minute)]
    features = [c for c in d if c not in ("click", "booking", "item_ctr_before")]
    return {c: [d[c][i] for i in keep] for c in features}


def test_no_leakage_mutating_the_future_leaves_past_rows_unchanged() -> None:
    vectors = _lookup(with_types=True)
    log = random_log(n_requests=60, seed=3)
    cutoff = 200.0
    base = build_training_set(connect(log.table()), vectors=vectors)
    # Rewrite the future: drop every click/booking after the cutoff, add a flood of new ones.
    future = EventLog()
    future.rows = [r for r in log.rows if r["ts"] < ts(cutoff) or r["event_type"] == "impression"]
    for k in range(200):
        future.add(cutoff + k, f"u{k % 5}", "click", f"i{k % 12}", request=f"r{k}",
                   dwell_ms=500_000)
        future.add(cutoff + k + 0.5, f"u{k % 5}", "booking", f"i{k % 12}")
    mutated = build_training_set(connect(future.table()), vectors=vectors)
    a, b = _rows_before(base, cutoff), _rows_before(mutated, cutoff)
    assert len(a["event_id"]) > 100
    assert a == b
    # ...and the mutation did change later rows, so the comparison has teeth.
    assert _rows_before(base, 1e9)["item_clicks_before"] != _rows_before(mutated, 1e9)[
        "item_clicks_before"
    ]


def test_same_timestamp_events_are_not_visible() -> None:
    log = EventLog()
    log.add(5, "u1", "click", "i3", request="r0")
    log.add(5, "u1", "impression", "i3", request="r1", position=1)
    t = build_training_set(connect(log.table())).to_pydict()
    assert t["item_clicks_before"] == [0] and t["user_clicks_before"] == [0]
    assert t["recent_clicks"] == [[]]


def test_negative_downsampling_keeps_all_positives() -> None:
    log = random_log(n_requests=120, seed=1)
    full = build_training_set(connect(log.table()))
    cfg = TrainingSetConfig(negative_rate=0.3, seed=0)
    sampled = build_training_set(connect(log.table()), cfg)
    y_full = np.asarray(full.column("click"))
    y = np.asarray(sampled.column("click"))
    assert y.sum() == y_full.sum()
    kept = (~y).sum() / (~y_full).sum()
    assert 0.2 < kept < 0.4
    assert sampled.schema.metadata[b"negative_rate"] == b"0.3"


def test_personalization_columns_match_the_online_function() -> None:
    from funnel.features.personalization import RecentActions, observe, personalization_features

    vectors = _lookup(with_types=True)
    log = random_log(n_requests=40, seed=5)
    table = build_training_set(connect(log.table()), vectors=vectors).to_pydict()
    # Replay one user online as the server would: a request's candidates are scored before
    # any event at their timestamp (their own impressions included) reaches the state.
    user = "u2"
    recent = RecentActions(max_len=10)
    rows = sorted(
        (r for r in log.rows if r["user_id"] == user and r["item_id"] is not None),
        key=lambda r: (r["ts"], r["event_type"] != "impression", r["event_id"]),
    )
    checked = 0
    by_ts: dict[int, list[dict]] = {}
    for r in rows:
        by_ts.setdefault(int(r["ts"].timestamp() * 1000), []).append(r)
    for now, group in by_ts.items():
        for r in group:
            if r["event_type"] == "impression":
                online = personalization_features([r["item_id"]], recent, vectors, now_ms=now)
                i = table["event_id"].index(r["event_id"])
                for name, value in online.items():
                    assert table[name][i] == pytest.approx(float(value[0]), abs=1e-6), name
                checked += 1
        for r in group:
            recent = observe(recent, r["event_type"], r["item_id"], ts_ms=now,
                             dwell_ms=r["dwell_ms"], request_id=r["request_id"],
                             position=r["position"])
    assert set(TASTE_FEATURES) <= set(online)
    taste = {name: np.array(table[name]) for name in TASTE_FEATURES}
    assert (taste["taste_contrast_sim"] != 0).mean() > 0.3  # live, not a constant
    assert taste["user_item_shown"].max() >= 1
    assert checked > 10
    assert max(table["emb_click_sim"]) > 0.5
    # the user-type feature is live: it changes once users have booked (point in time)
    types = vectors.types
    assert types is not None
    sims = np.array(table["emb_type_sim"])
    new_user = types.similarities(NEW_USER, table["item_id"])
    assert (sims != 0).mean() > 0.9
    assert (np.abs(sims - new_user) > 1e-6).sum() > 20
    first = np.abs(sims[:3] - new_user[:3]).max()  # nobody has booked before the first rows
    assert first < 1e-6


def test_streamed_rows_equal_the_whole_set_at_any_partition_and_batch_size() -> None:
    from funnel.features.training_set import TrainingRows

    log = random_log(n_requests=150, seed=3)
    con = connect(log.table())
    cfg = TrainingSetConfig(negative_rate=0.5, seed=4)
    whole = build_training_set(con, cfg, _lookup())
    with TrainingRows.open(con, cfg, _lookup(), partition_rows=40) as rows:  # ~19 partitions
        assert rows.rows == 750 and rows.click_rate == pytest.approx(
            float(np.asarray(build_training_set(con, vectors=_lookup()).column("click")).mean()))
        batches = list(rows.batches(batch_rows=37))
    assert len(batches) > 10 and all(b.num_rows <= 37 for b in batches)
    streamed = pa.concat_tables(batches)
    assert streamed.equals(whole, check_metadata=True)  # same rows, same sampling stream


def test_a_store_without_impressions_streams_one_empty_table() -> None:
    from funnel.features.training_set import TrainingRows

    log = EventLog()
    log.add(0, "u1", "click", "i1", request="r1")
    with TrainingRows.open(connect(log.table())) as rows:
        (only,) = list(rows.batches())
    assert rows.rows == 0 and only.num_rows == 0 and "recent_clicks" in only.column_names



def test_rows_stream_through_a_directory_whose_name_holds_a_quote(tmp_path) -> None:
    from funnel.features.training_set import TrainingRows

    log = random_log(n_requests=30, seed=6)
    con = connect(log.table())
    with TrainingRows.open(con, workdir=tmp_path / "it's 'quoted'") as rows:
        streamed = pa.concat_tables(rows.batches())
    assert streamed.equals(build_training_set(con))


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_partition_and_batch_sizes_must_be_positive_ints(bad) -> None:
    from funnel.features.training_set import TrainingRows

    con = connect(random_log(n_requests=10, seed=1).table())
    with pytest.raises(ValueError, match=r"partition_rows must be a positive int; got "):
        TrainingRows.open(con, partition_rows=bad)
    with TrainingRows.open(con) as rows, \
            pytest.raises(ValueError, match=r"batch_rows must be a positive int; got "):
        next(rows.batches(batch_rows=bad))
