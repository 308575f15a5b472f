"""Query -> items learned from search clicks: what people clicked or booked after a search.

Each click, add-to-cart or booking is attributed to the same user's latest search at most
``window_minutes`` before it (a DuckDB ASOF join), weighted by event type. Queries are matched
after :func:`funnel.recall.text.normalize_query` (the one analyzer, :mod:`funnel.text`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from funnel._checks import check_is_fitted, positive_float, positive_int, validate_params
from funnel.recall._sql import require_columns, run
from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.persist import NON_NEGATIVE, TopListsPersistence
from funnel.recall.text import normalize_query
from funnel.recall.toplists import TopLists

QUERY_ITEMS_SQL = """
WITH s AS (
    SELECT user_id, ts, query FROM events
    WHERE event_type = 'search' AND query IS NOT NULL AND trim(query) <> ''
), c AS (
    SELECT user_id, ts, item_id,
           CASE event_type WHEN 'click' THEN $click_w WHEN 'add_to_cart' THEN $cart_w
                           ELSE $book_w END AS w
    FROM events
    WHERE event_type IN ('click', 'add_to_cart', 'booking') AND item_id IS NOT NULL
)
SELECT s.query AS key, c.item_id AS item, sum(c.w) AS score
FROM c ASOF JOIN s ON c.user_id = s.user_id AND c.ts >= s.ts
WHERE epoch(c.ts) - epoch(s.ts) <= $window_s
GROUP BY s.query, c.item_id
"""


class QueryItems(TopListsPersistence):
    """Items clicked / booked after each normalized query.

    Example
    -------
    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> ev = pa.table({"user_id": ["u", "u"], "ts": [t, t + dt.timedelta(minutes=1)],
    ...     "event_type": ["search", "click"], "query": ["Paris  Hotel", None],
    ...     "item_id": [None, "a"]})
    >>> QueryItems().fit(ev).candidates(RecallRequest(query="paris hotel")).item_ids.tolist()
    ['a']
    """

    _toplists = ("lists_", "lists")
    name = "query_items"

    def __init__(
        self,
        *,
        window_minutes: float = 30.0,
        click_weight: float = 1.0,
        cart_weight: float = 2.0,
        booking_weight: float = 3.0,
        top_n: int = 200,
    ) -> None:
        self.window_minutes = window_minutes
        self.click_weight = click_weight
        self.cart_weight = cart_weight
        self.booking_weight = booking_weight
        self.top_n = top_n

    def fit(self, events: pa.Table) -> QueryItems:
        """Learn from contract ``events`` (user_id, ts, event_type, query, item_id)."""
        validate_params(self.get_params(), {
            "window_minutes": (positive_float, "a positive float"),
            "click_weight": NON_NEGATIVE, "cart_weight": NON_NEGATIVE,
            "booking_weight": NON_NEGATIVE,
            "top_n": (positive_int, "a positive int"),
        })
        require_columns(events, "events", ("user_id", "ts", "event_type", "query", "item_id"))
        params = {
            "click_w": float(self.click_weight), "cart_w": float(self.cart_weight),
            "book_w": float(self.booking_weight), "window_s": float(self.window_minutes) * 60,
        }
        raw = run(QUERY_ITEMS_SQL, {"events": events}, params)
        keys = pa.array([normalize_query(k) for k in raw.column("key").to_pylist()], pa.string())
        merged = (
            pa.table({"key": keys, "item": raw.column("item"), "score": raw.column("score")})
            .group_by(["key", "item"]).aggregate([("score", "sum")])
            .rename_columns(["key", "item", "score"])
        )
        merged = merged.filter(pc.not_equal(merged.column("key"), ""))
        self.lists_ = TopLists.from_table(merged, self.top_n)
        return self

    def candidates(self, request: RecallRequest) -> Candidates:
        check_is_fitted(self, "lists_")
        if not request.query:
            return Candidates.empty()
        ids, scores = self.lists_.lookup(normalize_query(request.query))
        return Candidates(ids[: request.k], scores[: request.k])

