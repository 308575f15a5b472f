"""User-type / item-type embeddings from booking sequences (paper sec. 3.2)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from funnel.embed import TypeEmbeddings, TypeRules
from funnel.embed.build import bookings_from_sessions
from funnel.embed.simulate import SessionSimConfig, simulate_sessions
from funnel.embed.types import NEW_USER, ItemTyper, booking_sequences, user_type_of
from funnel.exceptions import ConfigError, NotFittedError

CATALOG = pa.table({
    "item_id": ["a", "b", "c", "d"],
    "market": ["m1", "m1", "m1", "m2"],
    "category": ["x", "x", "y", "x"],
    "price": [10.0, 20.0, 30.0, 10.0],
})


def test_item_types_bucket_price_by_market_quantiles() -> None:
    typer = ItemTyper.fit(TypeRules(price_bands=3), CATALOG)
    assert typer.price_edges["m1"] == pytest.approx([50 / 3, 70 / 3])  # tertiles of 10, 20, 30
    row = CATALOG.to_pylist()[2]
    assert typer.type_of(row) == "item_type:market=m1|category=y|price_band=2"


def test_user_type_is_computed_from_earlier_bookings_only() -> None:
    rules = TypeRules(user_fields=("market", "n_bookings"), booking_edges=(1, 3))
    typer = ItemTyper.fit(rules, CATALOG)
    t = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    bookings = pa.table({"user_id": ["u", "u", "u"], "ts": [t[2], t[0], t[1]],
                         "item_id": ["d", "a", "b"]})
    (seq,) = booking_sequences(bookings, CATALOG, typer)
    assert seq == [
        NEW_USER, "item_type:market=m1|category=x|price_band=0",
        "user_type:market=m1|n_bookings=1", "item_type:market=m1|category=x|price_band=1",
        "user_type:market=m1|n_bookings=1", "item_type:market=m2|category=x|price_band=0",
    ]
    assert user_type_of(rules, []) == NEW_USER


def test_unknown_bucketing_field_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"item_fields: got \['colour'\]"):
        TypeRules(item_fields=("colour",)).check()


@pytest.fixture(scope="module")
def sim_types() -> tuple[TypeEmbeddings, pa.Table]:
    sessions, items = simulate_sessions(SessionSimConfig(n_sessions=6000, n_markets=4, seed=3))
    bookings = bookings_from_sessions(sessions)
    return TypeEmbeddings(dim=16, epochs=10).fit(bookings, items), items


def test_user_types_are_closest_to_item_types_of_their_market(sim_types) -> None:
    emb, _ = sim_types
    users = [t for t in emb.vocab_ if t.startswith("user_type:market=")]
    items = [t for t in emb.vocab_ if t.startswith("item_type:")]
    assert len(users) > 10 and len(items) == 4 * 5 * 3

    def market(t: str) -> str:
        return t.split("market=")[1].split("|")[0]

    gaps = []
    for u in users:
        same = [emb.similarity(u, i) for i in items if market(i) == market(u)]
        other = [emb.similarity(u, i) for i in items if market(i) != market(u)]
        gaps.append(np.mean(same) - np.mean(other))
    assert np.mean(gaps) > 0.2
    assert np.mean(np.array(gaps) > 0) > 0.9


def test_similarity_feature_matches_vectors_and_defaults_to_zero(sim_types) -> None:
    emb, items = sim_types
    row = items.to_pylist()[0]
    it = emb.item_type(row)
    u = emb.user_type([row, row])  # a user who booked this item twice
    expected = float(emb.vectors_[emb.index_[u]] @ emb.vectors_[emb.index_[it]])
    assert emb.similarity(u, it) == pytest.approx(expected)
    assert emb.similarity("user_type:unseen", it) == 0.0
    col = emb.similarities([u, "user_type:unseen"], [it, it])
    assert col.dtype == np.float32 and col[1] == 0.0 and col[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="must align; got 2 and 1"):
        emb.similarities([u, u], [it])


def test_save_load_round_trip(sim_types, tmp_path: Path) -> None:
    emb, items = sim_types
    emb.save(tmp_path)
    back = TypeEmbeddings.load(tmp_path)
    row = items.to_pylist()[5]
    assert back.item_type(row) == emb.item_type(row)
    assert np.array_equal(back.vectors_, emb.vectors_) and back.vocab_ == emb.vocab_


def test_unfitted_and_missing_columns() -> None:
    with pytest.raises(NotFittedError):
        TypeEmbeddings().similarity("a", "b")
    with pytest.raises(ValueError, match=r"'bookings' table lacks column\(s\) \['ts'\]"):
        TypeEmbeddings().fit(pa.table({"user_id": ["u"], "item_id": ["a"]}), CATALOG)
