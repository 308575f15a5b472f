"""Cold start for items without sessions: borrow vectors of look-alike known items."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class AttributeIndex:
    """Known items grouped by market and (market, category), with their log-prices.

    Grbovic & Cheng (2018, sec. 3.1): a new listing gets the mean vector of the 3 nearest
    listings of the same market, type and price bucket. Here: same market always; same
    category when the new item has one; the ``k`` closest in log-price (items without a price
    rank last; ties by row, so the answer is deterministic).
    """

    def __init__(
        self,
        markets: Sequence[str | None],
        categories: Sequence[str | None],
        prices: Sequence[float | None],
    ) -> None:
        groups: dict[tuple[str, str | None], list[int]] = {}
        for row, (m, c) in enumerate(zip(markets, categories, strict=True)):
            if m is None:
                continue
            groups.setdefault((m, None), []).append(row)
            if c is not None:
                groups.setdefault((m, c), []).append(row)
        log_price = np.array(
            [math.log(p) if p is not None and math.isfinite(p) and p > 0 else np.nan
             for p in prices], dtype=np.float64,
        )
        self._groups = {key: np.asarray(rows, dtype=np.int64) for key, rows in groups.items()}
        self._log_price = log_price

    def nearest(
        self, *, market: str, category: str | None, price: float | None, k: int = 3
    ) -> list[int]:
        """Rows of the ``k`` known items most like the new one (empty if none qualifies)."""
        rows = self._groups.get((market, category))
        if rows is None:
            return []
        if price is None or not math.isfinite(price) or price <= 0:
            return rows[:k].tolist()
        dist = np.abs(self._log_price[rows] - math.log(price))
        dist = np.where(np.isnan(dist), np.inf, dist)
        order = np.lexsort((rows, dist))  # by distance, then row
        return rows[order[:k]].tolist()
