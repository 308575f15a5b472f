from __future__ import annotations

import numpy as np
import pytest

from funnel.exceptions import ModelFitError
from funnel.suggest.mining import MiningConfig, load_searches, mine_queries

from .conftest import StoreBuilder, shop, ts


def _log(store: StoreBuilder, **cfg: object):  # type: ignore[no-untyped-def]
    config = MiningConfig(**cfg)  # type: ignore[arg-type]
    return mine_queries(load_searches(store.connect(), config=config), config)


def test_variants_merge_and_stats_are_hand_computed(store: StoreBuilder) -> None:
    log = _log(shop(store))
    i = log.index["nike shoes"]  # 6x "Nike Shoes" + 3x "nike shoes"
    assert log.count[i] == 9 and log.users[i] == 9
    # 25 searches, 16 with a click, 3 with a booking (bookings carry no request id: they
    # are attributed to the user's previous search within 30 minutes)
    assert log.ctr[i] == pytest.approx((9 + 20 * 16 / 25) / (9 + 20))
    assert log.booking_rate[i] == pytest.approx((3 + 20 * 3 / 25) / (9 + 20))
    j = log.index["nokia phone"]
    now = ts(days=13).timestamp()
    ages = [(now - ts(days=d, minutes=7).timestamp()) / 86400 for d in range(4)]
    assert log.decayed[j] == pytest.approx(sum(0.5 ** (a / 14.0) for a in ages))
    assert log.market[i] == "m1"
    assert log.clicked_items[i] == {"s0": 6, "s3": 6, "s1": 3}


def test_quality_sinks_queries_that_never_convert(store: StoreBuilder) -> None:
    log = _log(shop(store))
    quality = log.score / log.decayed
    assert quality[log.index["nike socks"]] < 0.75 < 1.0 < quality[log.index["nike shoes"]]


def test_block_list_and_minimum_support(store: StoreBuilder) -> None:
    shop(store).search("z", "rare query", ts(days=1))
    log = _log(store, block_terms=("SOCKS",))
    assert "nike socks" not in log.index and "rare query" not in log.index
    assert log.n_blocked == 1 and log.n_below_support == 1
    strict = _log(store, min_users=5)
    assert sorted(strict.queries) == ["nike shoes", "nike socks"]


def test_sessions_split_on_gap(store: StoreBuilder) -> None:
    shop(store)
    s = load_searches(store.connect())
    rows = [list(s.text[r]) for r in s.sessions(30.0) if s.user[r[0]] == "x0"]
    assert rows == [["nike shoes", "adidas shoes"]]


def test_until_filters_and_empty_log_raises(store: StoreBuilder) -> None:
    shop(store)
    con = store.connect()
    early = load_searches(con, until_ms=int(ts(days=1).timestamp() * 1000))
    assert len(early) == 3 and np.all(early.ts_ms < ts(days=1).timestamp() * 1000)
    with pytest.raises(ModelFitError, match="no search events"):
        mine_queries(load_searches(con, until_ms=0))
    with pytest.raises(ValueError, match="'half_life_days' parameter must be a float > 0"):
        MiningConfig(half_life_days=0)
