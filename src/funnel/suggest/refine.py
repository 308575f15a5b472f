"""Refinement chips: brand, category and price-band terms that split a query's results well.

A query's results are the catalog items matching all its tokens plus the items its searches
clicked (weighted by clicks). An attribute splits them well when its values are spread out
(normalized entropy); a value is a good chip when it takes a balanced share ``4p(1-p)``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from funnel.suggest.normalize import normalize_query

ATTRIBUTES = ("category", "brand", "price_band")
PRICE_BANDS = ("budget", "mid range", "premium")


@dataclass(frozen=True)
class Catalog:
    """What refinements need of each item: its attribute values and its searchable tokens."""

    attrs: dict[str, dict[str, str | None]]  # item -> attribute -> value
    postings: dict[str, set[str]]  # token -> items

    @classmethod
    def from_items(cls, items: pa.Table) -> Catalog:
        """Index an items table of the contract schema; price bands are per-category terciles."""
        cols = {c: items.column(c).to_pylist() for c in ("item_id", "title", "category", "brand",
                                                          "price")}
        by_cat: dict[str | None, list[float]] = defaultdict(list)
        for cat, price in zip(cols["category"], cols["price"], strict=True):
            if price is not None:
                by_cat[cat].append(price)
        cuts = {c: np.quantile(v, [1 / 3, 2 / 3]) for c, v in by_cat.items() if v}
        attrs: dict[str, dict[str, str | None]] = {}
        postings: dict[str, set[str]] = defaultdict(set)
        for item, title, cat, brand, price in zip(*cols.values(), strict=True):
            band = None
            if price is not None and cat in cuts:
                band = PRICE_BANDS[int(np.searchsorted(cuts[cat], price, side="right"))]
            attrs[item] = {"category": cat, "brand": brand, "price_band": band}
            text = " ".join(v for v in (title, cat, brand) if v)
            for tok in set(normalize_query(text).split()):
                postings[tok].add(item)
        return cls(attrs=attrs, postings=dict(postings))

    def matching(self, query: str, cap: int = 5000) -> set[str]:
        """Items whose title/category/brand contain every token of ``query``."""
        toks = query.split()
        if not toks:
            return set()
        sets = sorted((self.postings.get(t, set()) for t in toks), key=len)
        out = set(sets[0])
        for s in sets[1:]:
            out &= s
            if not out:
                break
        return out if len(out) <= cap else set(sorted(out)[:cap])


def refinements(
    query: str,
    clicked: Counter[str],
    catalog: Catalog,
    *,
    top: int = 8,
    min_share: float = 0.05,
    min_results: float = 3.0,
) -> list[dict[str, object]]:
    """Up to ``top`` chips ``{attribute, value, share, score, query}`` for ``query``, best first."""
    weights: dict[str, float] = dict.fromkeys(catalog.matching(query), 1.0)
    for item, n in clicked.items():
        if item in catalog.attrs:
            weights[item] = weights.get(item, 0.0) + float(n)
    total = sum(weights.values())
    if total < min_results:
        return []
    qtoks = set(query.split())
    chips: list[dict[str, object]] = []
    for attr in ATTRIBUTES:
        dist: dict[str, float] = {}
        for item, w in weights.items():
            value = catalog.attrs[item][attr]
            if value is not None:
                dist[value] = dist.get(value, 0.0) + w
        covered = sum(dist.values())
        if len(dist) < 2 or covered == 0:
            continue
        entropy = -sum((w / covered) * math.log(w / covered) for w in dist.values())
        utility = entropy / math.log(len(dist)) * covered / total
        for value, w in dist.items():
            share = w / covered
            vtoks = set(normalize_query(value).split())
            if share < min_share or share > 1 - min_share or vtoks <= qtoks:
                continue
            chips.append({
                "attribute": attr,
                "value": value,
                "share": round(share, 4),
                "score": round(utility * 4 * share * (1 - share), 6),
                "query": f"{query} {normalize_query(value)}",
            })
    chips.sort(key=lambda c: (-float(str(c["score"])), str(c["attribute"]), str(c["value"])))
    return chips[:top]
