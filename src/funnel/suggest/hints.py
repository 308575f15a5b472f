"""Hint queries for the empty search box: what converts in the user's recent categories.

Each category keeps its queries ranked by expected bookings per search shown as a hint
(smoothed booking rate x log popularity); a user gets the best ones from their top categories,
preferring their market, and a new user gets the most popular queries overall.
"""

from __future__ import annotations

import numpy as np


def conversion_score(count: np.ndarray, booking_rate: np.ndarray, ctr: np.ndarray) -> np.ndarray:
    """How good a query is as a hint: converts (bookings, then clicks) and is searched."""
    return (booking_rate + 0.1 * ctr) * np.log1p(count)


def hints_by_category(
    query_category: list[str | None], score: np.ndarray, *, top: int = 10
) -> dict[str, list[int]]:
    """The ``top`` query ids per category by ``score``."""
    out: dict[str, list[int]] = {}
    for q in np.argsort(-score, kind="stable"):
        cat = query_category[int(q)]
        if cat is None:
            continue
        lst = out.setdefault(cat, [])
        if len(lst) < top:
            lst.append(int(q))
    return out


def pick_hints(
    categories: list[str],
    by_category: dict[str, list[int]],
    popular: list[int],
    query_market: list[str | None],
    *,
    market: str | None = None,
    exclude: set[int] | None = None,
    k: int = 1,
) -> list[int]:
    """Hint ids: round-robin over the user's categories (market matches first), then popular."""
    exclude = exclude or set()
    pools = [by_category.get(c, []) for c in categories]
    if market is not None:
        pools = [sorted(p, key=lambda q: query_market[q] != market) for p in pools]
    out: list[int] = []
    depth = 0
    while len(out) < k and any(depth < len(p) for p in pools):
        for p in pools:
            if depth < len(p) and p[depth] not in exclude and p[depth] not in out:
                out.append(p[depth])
                if len(out) == k:
                    return out
        depth += 1
    for q in popular:
        if len(out) == k:
            break
        if q not in exclude and q not in out:
            out.append(q)
    return out
