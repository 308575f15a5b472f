"""The static world of a synthetic marketplace: markets, categories, brands, items and users.

Everything here is drawn from the seed alone (one random stream per purpose), so the latent
geometry can be regenerated for tests without generating any events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from funnel.data.synthetic._config import MarketplaceConfig
from funnel.data.synthetic._vocab import BRAND_HEADS, BRAND_TAILS, CATEGORIES, MARKETS

DAY_MS = 86_400_000
BASE_LOG_PRICE = float(np.log(110.0))
CHINESE_MARKETS = frozenset(
    {"shanghai", "beijing", "hongkong", "taipei", "hangzhou", "chengdu", "xian", "sanya", "lijiang"}
)
BRAND_SCALE = 0.5  # norm of a brand's offset from its category centre
ITEM_NOISE = 0.7  # norm of an item's own offset
IDIO_SCALE = 1.3  # norm of a user's personal direction (what only personalization can learn)
_STREAMS = {
    "markets": 1,
    "brands": 2,
    "latent": 3,
    "items": 4,
    "users": 5,
    "text": 6,
    "plan": 7,
    "events": 8,
}


def stream(config: MarketplaceConfig, name: str, *extra: int) -> np.random.Generator:
    """An independent, reproducible random stream for one purpose (and optional chunk index)."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, _STREAMS[name], *extra]))


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class World:
    """Arrays describing markets, brands, items and users (index = row number)."""

    market_names: list[str]
    market_zh: list[str]
    market_weight: np.ndarray  # (M,) heavy-tailed destination popularity
    cat_names: list[str]
    cat_zh: list[str]
    cat_weight: np.ndarray  # (C,)
    brand_names: list[str]
    cat_brands: np.ndarray  # (C, maxB) brand ids tied to each category, -1 padded
    cat_brand_count: np.ndarray  # (C,)
    centres: np.ndarray  # (C, D) unit category centres
    item_market: np.ndarray  # (N,)
    item_cat: np.ndarray
    item_brand: np.ndarray
    item_vec: np.ndarray  # (N, D) unit latent vectors
    item_logq: np.ndarray  # (N,) log quality, exponential tail (Pareto quality)
    item_log_price: np.ndarray
    item_price: np.ndarray
    item_bid: np.ndarray  # nan when not sponsored
    item_created_ms: np.ndarray  # offset from span start; negative = before the span
    user_home: np.ndarray  # (U,)
    user_zh: np.ndarray  # (U,) bool
    user_device: np.ndarray  # (U,) 0 mobile, 1 desktop, 2 tablet
    user_taste: np.ndarray  # (U, C) category mixture
    user_idio: np.ndarray  # (U, D) persistent personal direction in latent space
    user_sens: np.ndarray  # (U,) price sensitivity
    user_budget: np.ndarray  # (U,) preferred log price
    user_activity: np.ndarray  # (U,) relative number of sessions
    market_items: list[np.ndarray]  # item ids of each market
    market_cat_items: dict[tuple[int, int], np.ndarray]

    @property
    def item_ids(self) -> list[str]:
        return item_ids(len(self.item_market))

    @property
    def user_ids(self) -> list[str]:
        return user_ids(len(self.user_home))


def item_ids(n: int) -> list[str]:
    """Stable string ids ``i0000000`` ... for ``n`` items."""
    return [f"i{i:07d}" for i in range(n)]


def user_ids(n: int) -> list[str]:
    """Stable string ids ``u0000000`` ... for ``n`` users."""
    return [f"u{i:07d}" for i in range(n)]


def _markets(config: MarketplaceConfig) -> tuple[list[str], list[str], np.ndarray]:
    rng = stream(config, "markets")
    names, zh = [], []
    for k in range(config.n_markets):
        en, cn = MARKETS[k % len(MARKETS)]
        rep = k // len(MARKETS)
        names.append(en if rep == 0 else f"{en}{rep + 1}")
        zh.append(cn if rep == 0 else f"{cn}{rep + 1}")
    order = rng.permutation(config.n_markets)
    names = [names[i] for i in order]
    zh = [zh[i] for i in order]
    rank = np.arange(1, config.n_markets + 1, dtype=np.float64)
    weight = rank**-1.1
    return names, zh, weight / weight.sum()


def _brands(config: MarketplaceConfig, cat_weight: np.ndarray) -> tuple[list[str], np.ndarray]:
    rng = stream(config, "brands")
    combos = [f"{h} {t}" for h in BRAND_HEADS for t in BRAND_TAILS]
    picks = rng.permutation(len(combos))
    names = []
    for k in range(config.n_brands):
        base = combos[picks[k % len(combos)]]
        rep = k // len(combos)
        names.append(base if rep == 0 else f"{base} {rep + 1}")
    n_cat = len(cat_weight)
    ties = np.zeros((config.n_brands, n_cat), dtype=bool)
    for b in range(config.n_brands):
        k = int(rng.integers(1, min(3, n_cat) + 1))
        ties[b, rng.choice(n_cat, size=k, replace=False, p=cat_weight)] = True
    for c in np.flatnonzero(~ties.any(axis=0)):
        ties[int(rng.integers(config.n_brands)), c] = True
    return names, ties


def build_world(config: MarketplaceConfig) -> World:
    """Draw the whole static world of ``config`` (deterministic in ``config.seed``)."""
    m_names, m_zh, m_weight = _markets(config)
    n_cat, dim = config.n_categories, config.latent_dim
    cats = CATEGORIES[:n_cat]
    rng = stream(config, "latent")
    cat_weight = rng.dirichlet(np.full(n_cat, 3.0))
    b_names, ties = _brands(config, cat_weight)
    n_brand = len(b_names)
    centres = _normalize(rng.normal(size=(n_cat, dim)))
    brand_off = rng.normal(scale=BRAND_SCALE / np.sqrt(dim), size=(n_brand, dim))
    brand_price = rng.normal(scale=0.25, size=n_brand)
    brand_size = rng.lognormal(0.0, 1.0, size=n_brand)
    market_price = rng.normal(scale=0.3, size=config.n_markets)

    counts = [int(ties[:, c].sum()) for c in range(n_cat)]
    cat_brands = np.full((n_cat, max(counts)), -1, dtype=np.int64)
    for c in range(n_cat):
        cat_brands[c, : counts[c]] = np.flatnonzero(ties[:, c])

    # items
    n = config.items
    rng = stream(config, "items")
    floor = min(5, n // config.n_markets)
    per_market = rng.multinomial(n - floor * config.n_markets, m_weight) + floor
    item_market = np.repeat(np.arange(config.n_markets), per_market)
    item_cat = rng.choice(n_cat, size=n, p=cat_weight)
    item_brand = np.empty(n, dtype=np.int64)
    for c in range(n_cat):
        idx = np.flatnonzero(item_cat == c)
        bs = cat_brands[c, : counts[c]]
        p = brand_size[bs] / brand_size[bs].sum()
        item_brand[idx] = bs[rng.choice(len(bs), size=len(idx), p=p)]
    noise = rng.normal(scale=ITEM_NOISE / np.sqrt(dim), size=(n, dim))
    item_vec = _normalize(centres[item_cat] + brand_off[item_brand] + noise)
    item_logq = np.log1p(rng.pareto(1.5, size=n))
    cat_price = np.array([c[2] for c in cats])
    log_price = (
        BASE_LOG_PRICE
        + cat_price[item_cat]
        + market_price[item_market]
        + brand_price[item_brand]
        + rng.normal(scale=0.35, size=n)
    )
    price = np.round(np.exp(log_price), 2)
    sponsored = rng.random(n) < config.sponsored_fraction
    bid = np.where(sponsored, np.round(rng.uniform(0.05, 1.5, size=n), 2), np.nan)
    new = rng.random(n) < config.new_item_fraction
    span = config.days * DAY_MS
    created = np.where(
        new,
        rng.integers(0, span, size=n),
        -rng.integers(DAY_MS, 730 * DAY_MS, size=n),
    ).astype(np.int64)

    # users
    n_users = config.users
    rng = stream(config, "users")
    home = rng.choice(config.n_markets, size=n_users, p=m_weight)
    chinese_home = np.array([m in CHINESE_MARKETS for m in m_names])[home]
    zh = rng.random(n_users) < np.where(chinese_home, 0.85, config.zh_user_fraction)
    device = rng.choice(3, size=n_users, p=[0.6, 0.3, 0.1])
    taste = rng.dirichlet(np.maximum(3.0 * cat_weight, 1e-3), size=n_users)
    idio = rng.normal(scale=IDIO_SCALE / np.sqrt(dim), size=(n_users, dim))
    sens = rng.lognormal(0.0, 0.5, size=n_users)
    budget = BASE_LOG_PRICE + taste @ cat_price + rng.normal(scale=0.4, size=n_users)
    activity = rng.lognormal(0.0, 1.0, size=n_users)

    market_items = [np.flatnonzero(item_market == m) for m in range(config.n_markets)]
    market_cat_items = {}
    for m, ids in enumerate(market_items):
        cs = item_cat[ids]
        for c in range(n_cat):
            market_cat_items[(m, c)] = ids[cs == c]
    return World(
        market_names=m_names,
        market_zh=m_zh,
        market_weight=m_weight,
        cat_names=[c[0] for c in cats],
        cat_zh=[c[1] for c in cats],
        cat_weight=cat_weight,
        brand_names=b_names,
        cat_brands=cat_brands,
        cat_brand_count=np.array(counts),
        centres=centres,
        item_market=item_market,
        item_cat=item_cat,
        item_brand=item_brand,
        item_vec=item_vec,
        item_logq=item_logq,
        item_log_price=np.log(price),
        item_price=price,
        item_bid=bid,
        item_created_ms=created,
        user_home=home,
        user_zh=zh,
        user_device=device,
        user_taste=taste,
        user_idio=idio,
        user_sens=sens,
        user_budget=budget,
        user_activity=activity,
        market_items=market_items,
        market_cat_items=market_cat_items,
    )
