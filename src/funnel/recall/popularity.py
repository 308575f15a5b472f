"""Popularity per market with time decay: the fallback every cold request can still use.

An item's score in a market is the sum over its events of ``weight(event_type) * 0.5 **
(age / half_life)``, with age measured from the newest event, so last week's hits outrank last
year's. Market ``"*"`` holds the global list, used when a request names no (known) market.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from funnel._checks import check_is_fitted, positive_float, positive_int, validate_params
from funnel.recall._sql import require_columns, run
from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.persist import NON_NEGATIVE, TopListsPersistence
from funnel.recall.toplists import TopLists

GLOBAL = "*"

POPULARITY_SQL = """
WITH e AS (
    SELECT ts, coalesce(market, '') AS market, item_id,
           CASE event_type WHEN 'click' THEN $click_w WHEN 'add_to_cart' THEN $cart_w
                           WHEN 'booking' THEN $book_w ELSE 0.0 END AS w
    FROM events WHERE item_id IS NOT NULL
), ref AS (SELECT max(ts) AS t FROM e),
s AS (
    SELECT market, item_id, w * pow(0.5, (epoch(ref.t) - epoch(e.ts)) / (86400.0 * $half_life))
           AS score
    FROM e, ref WHERE w > 0
)
SELECT market AS key, item_id AS item, sum(score) AS score FROM s WHERE market <> ''
GROUP BY market, item_id
UNION ALL
SELECT '*' AS key, item_id AS item, sum(score) AS score FROM s GROUP BY item_id
"""


class Popularity(TopListsPersistence):
    """Most popular items per market, time-decayed and weighted by event type.

    Parameters
    ----------
    half_life_days : float
        Age at which an event counts half.
    click_weight, cart_weight, booking_weight : float
        Weight of each event type (impressions and searches count 0).
    top_n : int
        Items kept per market.

    Example
    -------
    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> ev = pa.table({"ts": [t, t], "event_type": ["click", "booking"], "item_id": ["a", "b"],
    ...                "market": ["fr", "fr"]})
    >>> Popularity().fit(ev).candidates(RecallRequest(market="fr")).item_ids.tolist()
    ['b', 'a']
    """

    _toplists = ("lists_", "lists")
    name = "popularity"

    def __init__(
        self,
        *,
        half_life_days: float = 14.0,
        click_weight: float = 1.0,
        cart_weight: float = 2.0,
        booking_weight: float = 5.0,
        top_n: int = 2000,
    ) -> None:
        self.half_life_days = half_life_days
        self.click_weight = click_weight
        self.cart_weight = cart_weight
        self.booking_weight = booking_weight
        self.top_n = top_n

    def fit(self, events: pa.Table) -> Popularity:
        """Learn from contract ``events`` (ts, event_type, item_id, market)."""
        validate_params(self.get_params(), {
            "half_life_days": (positive_float, "a positive float"),
            "click_weight": NON_NEGATIVE, "cart_weight": NON_NEGATIVE,
            "booking_weight": NON_NEGATIVE,
            "top_n": (positive_int, "a positive int"),
        })
        require_columns(events, "events", ("ts", "event_type", "item_id", "market"))
        params = {
            "click_w": float(self.click_weight), "cart_w": float(self.cart_weight),
            "book_w": float(self.booking_weight), "half_life": float(self.half_life_days),
        }
        self.lists_ = TopLists.from_table(run(POPULARITY_SQL, {"events": events}, params),
                                          self.top_n)
        return self

    def candidates(self, request: RecallRequest) -> Candidates:
        """The market's list (the global one when the market is unknown or not given)."""
        check_is_fitted(self, "lists_")
        key = request.market if request.market in self.lists_.keys else GLOBAL
        exclude = set(request.recent_items)
        # filtering keeps the order: when the first k + |exclude| hold k items not excluded,
        # those are the k the whole list would give; read the whole list only otherwise
        head = request.k + len(exclude)
        ids, scores = self.lists_.lookup(key, head)
        if exclude:
            keep = np.array([i not in exclude for i in ids.tolist()], dtype=bool)
            if keep.sum() < request.k and len(ids) == head:
                ids, scores = self.lists_.lookup(key)
                keep = np.array([i not in exclude for i in ids.tolist()], dtype=bool)
            ids, scores = ids[keep], scores[keep]
        return Candidates(ids[: request.k], scores[: request.k])

