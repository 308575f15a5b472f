"""Cold start for items without sessions: borrow vectors of look-alike known items."""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_by_attributes(
    markets: Sequence[str | None],
    categories: Sequence[str | None],
    prices: Sequence[float | None],
    *,
    market: str,
    category: str | None,
    price: float | None,
    k: int = 3,
) -> list[int]:
    """Rows of the ``k`` known items most like the new one (Grbovic & Cheng 2018, sec. 3.1).

    Same market is required; same category is required when ``category`` is given; among
    those, items closest in log-price win (items without a price rank last), ties by row.
    """
    rows = [
        i for i, m in enumerate(markets)
        if m == market and (category is None or categories[i] == category)
    ]

    def distance(i: int) -> float:
        p = prices[i]
        if price is None or price <= 0:
            return 0.0
        if p is None or p <= 0:
            return math.inf
        return abs(math.log(p) - math.log(price))

    rows.sort(key=lambda i: (distance(i), i))
    return rows[:k]
