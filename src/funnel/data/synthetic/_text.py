"""Titles, item attributes, queries and typos of the synthetic marketplace."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from funnel.data.synthetic._vocab import ADJECTIVES, LANDMARKS

PRICE_BAND_EDGES: tuple[float, ...] = (70.0, 140.0, 280.0)
PRICE_BANDS: tuple[str, ...] = ("low", "mid", "high", "lux")
_KEYBOARD = "qwertyuiopasdfghjklzxcvbnm"


def price_band(
    price: np.ndarray | Sequence[float],
    edges: Sequence[float] = PRICE_BAND_EDGES,
    labels: Sequence[str] = PRICE_BANDS,
) -> np.ndarray:
    """Map prices to bands ("low" < 70 <= "mid" < 140 <= "high" < 280 <= "lux").

    The same function fills the ``price_band`` item attribute, so any stage can derive the
    band of a raw price consistently.
    """
    p = np.asarray(price, dtype=np.float64)
    if len(labels) != len(edges) + 1:
        raise ValueError(
            f"price_band: 'labels' must have len(edges) + 1 = {len(edges) + 1} entries, "
            f"got {len(labels)}"
        )
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"price_band: 'edges' must be strictly increasing, got {list(edges)}")
    if np.isnan(p).any():
        raise ValueError("price_band: 'price' contains NaN; expected finite prices")
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), p, side="right")
    return np.asarray(labels, dtype=object)[idx].astype(str)


def item_titles(
    rng: np.random.Generator,
    brand: list[str],
    cat_en: list[str],
    cat_zh: list[str],
    market_en: list[str],
    market_zh: list[str],
) -> list[str]:
    """Titles mixing English and Chinese tokens, e.g. 'Aurora Stays cozy loft paris 舒适 阁楼'."""
    n = len(brand)
    adj = rng.integers(len(ADJECTIVES), size=(n, 2))
    land = rng.integers(len(LANDMARKS), size=n)
    u = rng.random((n, 4))
    out = []
    for i in range(n):
        a1, a2 = ADJECTIVES[adj[i, 0]], ADJECTIVES[adj[i, 1]]
        parts = [brand[i], a1[0]]
        if u[i, 0] < 0.3 and a2 != a1:
            parts.append(a2[0])
        parts.append(cat_en[i])
        if u[i, 1] < 0.7:
            parts.append(f"in {market_en[i].capitalize()}")
        if u[i, 2] < 0.5:
            parts.append(f"near {LANDMARKS[land[i]][0]}")
        parts += [a1[1], cat_zh[i]]
        if u[i, 3] < 0.4:
            parts.append(market_zh[i])
        out.append(" ".join(parts))
    return out


def item_attributes(
    band: np.ndarray, rooms: np.ndarray, rating: np.ndarray, guests: np.ndarray
) -> list[str]:
    """JSON attribute objects, e.g. '{"price_band": "mid", "rooms": 2, "rating": 4.6, ...}'."""
    return [
        json.dumps(
            {"price_band": str(b), "rooms": int(r), "rating": float(s), "guests": int(g)},
            ensure_ascii=False,
        )
        for b, r, s, g in zip(band, rooms, rating, guests, strict=True)
    ]


def add_typo(query: str, rng: np.random.Generator) -> str:
    """One character edit (delete, swap, substitute, duplicate) in a random token of length >= 4.

    Chinese-only queries get a deleted or swapped character instead.
    """
    tokens = query.split(" ")
    latin = [i for i, t in enumerate(tokens) if len(t) >= 4 and t.isascii()]
    if latin:
        k = latin[int(rng.integers(len(latin)))]
        t = tokens[k]
        j = int(rng.integers(1, len(t) - 1))
        op = int(rng.integers(4))
        if op == 1 and t[j] == t[j + 1]:  # swapping equal letters would change nothing
            op = 0
        if op == 0:
            t = t[:j] + t[j + 1 :]
        elif op == 1:
            t = t[:j] + t[j + 1] + t[j] + t[j + 2 :]
        elif op == 2:
            c = _KEYBOARD[int(rng.integers(len(_KEYBOARD)))]
            if c == t[j]:
                c = "x" if c != "x" else "z"
            t = t[:j] + c + t[j + 1 :]
        else:
            t = t[:j] + t[j] + t[j:]
        tokens[k] = t
        return " ".join(tokens)
    cjk = [i for i, t in enumerate(tokens) if len(t) >= 2]
    if not cjk:
        return query + query[-1]
    k = cjk[int(rng.integers(len(cjk)))]
    t = tokens[k]
    swap = rng.random() < 0.5 and t[0] != t[1]
    tokens[k] = t[1] + t[0] + t[2:] if swap else t[1:]
    return " ".join(tokens)


def build_query(
    market: tuple[str, str] | None,
    category: tuple[str, str] | None,
    brand: str | None,
    adjective: tuple[str, str] | None,
    price_word: tuple[str, str] | None,
    zh: bool,
    order: int,
) -> str:
    """Compose a normalized (lower-case, single-spaced) query from its parts in one language."""
    lang = 1 if zh else 0
    parts: list[str] = []
    if market is not None:
        parts.append(market[lang])
    if brand is not None:
        parts.append(brand.lower())
    if adjective is not None:
        parts.append(adjective[lang])
    if price_word is not None:
        parts.append(price_word[lang])
    if category is not None:
        parts.append(category[lang])
    if order == 1 and len(parts) > 1:  # some users type the place last: "loft paris"
        parts = parts[1:] + parts[:1]
    if not parts:
        parts = [market[lang]] if market else ["stay"]
    return " ".join(parts)
