"""Session simulation: intents, searches, a noisy production ranker, clicks, carts and bookings.

One call simulates every session of a chunk of users with numpy (no loop per event; one small
loop per search builds its query text, one per (market, category) group ranks results).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from funnel.data.synthetic._config import MarketplaceConfig
from funnel.data.synthetic._text import PRICE_BAND_EDGES, add_typo, build_query
from funnel.data.synthetic._vocab import ADJECTIVES, PRICE_WORDS
from funnel.data.synthetic._world import BASE_LOG_PRICE, DAY_MS, World, stream
from funnel.data.synthetic.context import EXAM_POWER as EXAM_POWER  # re-exported
from funnel.data.synthetic.context import sample_clicks

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MAX_RESULTS = 20
POOL_MAX = 1024
SPONSORED_BOOST = 0.4  # the production ranker lifts items that carry a bid
RANKER_QUALITY = 1.0  # exposure grows with (uncapped) quality: heavy-tailed popularity
RANKER_CATEGORY = 3.0  # lift of items in the category the query names
RANKER_PRICE = 1.5  # lift of items in the price band a "cheap"/"luxury" query asks for
SCORE_BUDGET = 2_000_000  # score-matrix cells per ranking batch (bounds memory)
PILOT_USERS = 400
PILOT = 2**40  # chunk key of the pilot run (real chunks count from 0)
PLAN_MARGIN = 1.08  # plan a few more sessions than the pilot suggests; the surplus is cut

# Index of each event type in funnel.data.schema.EVENT_TYPES.
IMPRESSION, CLICK, CART, BOOKING, SEARCH = 0, 1, 2, 3, 4

# True click model (see context.py): a top-down scan where a still-scanning user clicks position t
# with probability exam(t) * sigmoid(attractiveness logit) * (1 - context_strength) ** n_same_brand
# above, and stops after a click with probability 1 - continue_after_click (EXAM_POWER lives there).
# The latent part splits in two: the search's category centre (knowable from the query) and the
# user's personal direction plus the session's drift (knowable only from the user's behaviour).
ATTR_BIAS = -2.7
ATTR_CATEGORY = 2.5
ATTR_PERSONAL = 3.0
ATTR_QUALITY = 0.6
ATTR_BRAND = 0.7
ATTR_PRICE = 0.9
QUALITY_CAP = 1.5  # quality saturates, so the CTR does not drift with catalogue size
# Booking model: each click j has propensity b_j = sigmoid(BOOK_BIAS + BOOK_SLOPE * logit_j).
BOOK_BIAS = -3.4
BOOK_SLOPE = 1.5


@dataclass
class Plan:
    """Sessions per user and the chunks (user ranges) they are simulated in."""

    sessions: np.ndarray  # (U,) sessions of each user
    chunks: list[tuple[int, int]]  # [user_start, user_stop)


def plan_sessions(config: MarketplaceConfig, world: World) -> Plan:
    """Allocate sessions to users (heavy-tailed activity) and cut users into chunks.

    A pilot of one session for up to ``PILOT_USERS`` users (its own random stream) measures the
    mean events per session of this config, so the plan produces close to ``n_events``.
    """
    rng = stream(config, "plan")
    n_users = len(world.user_home)
    pilot_users = np.sort(rng.choice(n_users, size=min(n_users, PILOT_USERS), replace=False))
    pilot = simulate_chunk(config, world, pilot_users, np.ones(len(pilot_users), np.int64), PILOT)
    per_session = max(len(pilot.ts) / len(pilot_users), 1.0)
    n_sessions = int(np.ceil(config.n_events / per_session * PLAN_MARGIN)) + 2
    act = np.minimum(world.user_activity, 12.0)
    sessions = rng.multinomial(n_sessions, act / act.sum())
    cum = np.cumsum(sessions)
    cuts = np.searchsorted(cum, np.arange(config.chunk_sessions, cum[-1], config.chunk_sessions))
    bounds = np.unique(np.concatenate([[0], cuts + 1, [len(sessions)]]))
    bounds = bounds[bounds <= len(sessions)]
    chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    return Plan(sessions=sessions, chunks=chunks)


def _group_starts(counts: np.ndarray) -> np.ndarray:
    """Row index where each group of ``counts`` begins."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _exclusive_cumsum(x: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``x`` before each row within contiguous groups ``group``."""
    if len(x) == 0:
        return x.copy()
    cs = np.cumsum(x)
    excl = cs - x
    first = np.concatenate([[True], group[1:] != group[:-1]])
    base = excl[first]
    return excl - np.repeat(base, np.diff(np.concatenate([np.flatnonzero(first), [len(x)]])))


def _sample_rows(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Categorical draws: row r of cumulative probabilities ``cum`` with uniform ``u[r]``."""
    return np.minimum((cum < u[:, None]).sum(axis=1), cum.shape[1] - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _rank_results(
    rng: np.random.Generator,
    world: World,
    q_market: np.ndarray,
    q_cat_key: np.ndarray,
    q_brand_key: np.ndarray,
    q_price_key: np.ndarray,
    q_avail: np.ndarray,
) -> np.ndarray:
    """The production ranker: top-20 item ids per search (-1 padded), not personalized.

    Score = category match + brand match + price-word match ("cheap" -> low band, "luxury" ->
    high/lux band; ``q_price_key`` 0/1, -1 = none) + popularity + sponsored lift + Gumbel noise
    over a recall pool of the target market (Gumbel top-k = Plackett-Luce sampling, so the ranker
    is stochastic); items created after the search are never shown.
    """
    n_q = len(q_market)
    out = np.full((n_q, MAX_RESULTS), -1, dtype=np.int64)
    keys = q_market.astype(np.int64) * 1000 + (q_cat_key + 1)
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    ends = np.append(starts[1:], n_q)
    for key, a, b in zip(uniq, starts, ends, strict=True):
        m, c = int(key // 1000), int(key % 1000) - 1
        qs = order[a:b]
        market_items = world.market_items[m]
        if c >= 0:
            main = world.market_cat_items[(m, c)]
            n_other = min(48, len(market_items))
            other = rng.choice(market_items, size=n_other, replace=False)
            pool = np.union1d(main, other)
        else:
            pool = market_items
        if len(pool) > POOL_MAX:
            by_q = pool[np.argsort(-world.item_logq[pool], kind="stable")]
            head, tail = by_q[: POOL_MAX // 2], by_q[POOL_MAX // 2 :]
            pool = np.concatenate([head, rng.choice(tail, size=POOL_MAX // 2, replace=False)])
        static = RANKER_QUALITY * world.item_logq[pool]
        static = static + SPONSORED_BOOST * ~np.isnan(world.item_bid[pool])
        if c >= 0:
            static = static + RANKER_CATEGORY * (world.item_cat[pool] == c)
        p_brand = world.item_brand[pool]
        band = np.searchsorted(PRICE_BAND_EDGES, world.item_price[pool], side="right")
        p_low, p_lux = (band == 0)[None, :], (band >= 2)[None, :]
        created = world.item_created_ms[pool]
        k = min(MAX_RESULTS, len(pool))
        step = max(1, SCORE_BUDGET // len(pool))
        for s in range(0, len(qs), step):
            g = qs[s : s + step]
            score = static + rng.gumbel(size=(len(g), len(pool)))
            qb = q_brand_key[g, None]
            score += 1.5 * ((p_brand[None, :] == qb) & (qb >= 0))
            pk = q_price_key[g, None]
            score += RANKER_PRICE * ((p_low & (pk == 0)) | (p_lux & (pk == 1)))
            score[created[None, :] > q_avail[g, None]] = -np.inf
            top = np.argpartition(-score, k - 1, axis=1)[:, :k]
            top_score = np.take_along_axis(score, top, axis=1)
            srt = np.argsort(-top_score, axis=1, kind="stable")
            top = np.take_along_axis(top, srt, axis=1)
            top_score = np.take_along_axis(top_score, srt, axis=1)
            out[g, :k] = np.where(np.isfinite(top_score), pool[top], -1)
    return out


_NULLS = {
    "item": -1,
    "query": -1,
    "request": -1,
    "position": -1,
    "dwell": -1,
    "p_click": np.nan,
    "p_attract": np.nan,
    "p_book": np.nan,
}


def _block(n: int, **cols: np.ndarray | int) -> dict[str, np.ndarray]:
    """Columns of ``n`` events of one kind; scalars broadcast, missing columns are null."""
    out = {k: np.full(n, v) for k, v in _NULLS.items()}
    for k, v in cols.items():
        out[k] = np.broadcast_to(np.asarray(v), (n,))
    return out


@dataclass
class ChunkEvents:
    """Column arrays of one chunk's events (sorted by time) plus their truth."""

    event_type: np.ndarray
    ts: np.ndarray  # epoch ms
    user: np.ndarray
    item: np.ndarray  # -1 = null
    query: np.ndarray  # index into ``queries``; -1 = null
    request: np.ndarray  # chunk-local search index; -1 = null
    position: np.ndarray  # 1-based; -1 = null
    market: np.ndarray
    price: np.ndarray  # nan = null
    dwell: np.ndarray  # -1 = null
    p_click: np.ndarray  # nan = null; the true click probability in its list (context included)
    p_attract: np.ndarray  # nan = null; sigmoid(logit): no position, no list context
    p_book: np.ndarray
    intent_cat: np.ndarray  # -1 = null
    intent_brand: np.ndarray
    intent_market: np.ndarray
    session: np.ndarray  # chunk-local true session index of each event
    queries: list[str]
    n_searches: int
    n_sessions: int
    imp_p: np.ndarray  # p_click of each impression (for the summary)
    imp_clicked: np.ndarray


def _query_texts(
    world: World,
    *,
    q_market: np.ndarray,
    q_cat: np.ndarray,
    q_brand: np.ndarray,
    adj: np.ndarray,
    price_word: np.ndarray,
    zh: np.ndarray,
    order: np.ndarray,
    typo: np.ndarray,
    rng: np.random.Generator,
) -> list[str]:
    """Query text of each search from the parts it mentions (-1 = part left out)."""
    markets = list(zip(world.market_names, world.market_zh, strict=True))
    cats = list(zip(world.cat_names, world.cat_zh, strict=True))
    prices = (PRICE_WORDS["low"], PRICE_WORDS["lux"])
    out = []
    for i in range(len(q_market)):
        q = build_query(
            markets[q_market[i]] if q_market[i] >= 0 else None,
            cats[q_cat[i]] if q_cat[i] >= 0 else None,
            world.brand_names[q_brand[i]] if q_brand[i] >= 0 else None,
            ADJECTIVES[adj[i]] if adj[i] >= 0 else None,
            prices[price_word[i]] if price_word[i] >= 0 else None,
            bool(zh[i]),
            int(order[i]),
        )
        out.append(add_typo(q, rng) if typo[i] else q)
    return out


def _bookings(
    rng: np.random.Generator, c_sess: np.ndarray, c_item: np.ndarray, logit: np.ndarray, n_s: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True booking model over the clicks of ``n_s`` sessions.

    Click j has propensity b_j; its session books with probability 1 - prod(1 - b_j) and then
    picks click j with probability b_j / sum(b). So the TRUE probability that click j's item is
    booked is p_any * (sum of b over that item's clicks in the session) / sum(b), returned per
    click. Also returns the booked and carted item per session (-1 = none); a booked session
    carts first 60% of the time, an unbooked one carts its most bookable click 12% of the time.
    """
    n_c = len(c_sess)
    b = _sigmoid(BOOK_BIAS + BOOK_SLOPE * logit)
    p_any = 1.0 - np.exp(np.bincount(c_sess, weights=np.log1p(-b), minlength=n_s))
    b_sum = np.bincount(c_sess, weights=b, minlength=n_s)
    _, pair_inv = np.unique(c_sess * (int(c_item.max(initial=0)) + 1) + c_item, return_inverse=True)
    b_item = np.bincount(pair_inv, weights=b)[pair_inv]
    p_book = p_any[c_sess] * b_item / np.maximum(b_sum[c_sess], 1e-300)
    booked = rng.random(n_s) < p_any
    best = _group_argmax(c_sess, np.log(b) + rng.gumbel(size=n_c), n_s)  # Gumbel-max pick
    top_b = _group_argmax(c_sess, b, n_s)
    booked &= best >= 0
    cart = np.where(booked, rng.random(n_s) < 0.6, (top_b >= 0) & (rng.random(n_s) < 0.12))
    cart_item = np.where(booked, c_item[np.maximum(best, 0)], c_item[np.maximum(top_b, 0)])
    cart_item = np.where(cart, cart_item, -1)
    book_item = np.where(booked, c_item[np.maximum(best, 0)], -1)
    return p_book, book_item, cart_item


def _group_argmax(group: np.ndarray, key: np.ndarray, n_groups: int) -> np.ndarray:
    """Row of the largest ``key`` within each group (-1 for groups without rows)."""
    out = np.full(n_groups, -1, dtype=np.int64)
    if len(group) == 0:
        return out
    order = np.lexsort((key, group))
    last = np.flatnonzero(np.append(group[order][1:] != group[order][:-1], True))
    out[group[order][last]] = order[last]
    return out


def simulate_chunk(
    config: MarketplaceConfig,
    world: World,
    users: np.ndarray,
    sessions: np.ndarray,
    chunk: int,
    max_events: int | None = None,
    *,
    at_least_one: bool = False,
) -> ChunkEvents:
    """Simulate all sessions of ``users`` (``sessions[i]`` each); keep at most ``max_events``.

    Truncation drops whole sessions from the end, so every kept session is complete; with
    ``at_least_one`` the first session is kept even when it alone exceeds ``max_events``.
    """
    rng = stream(config, "events", chunk)
    dim = world.centres.shape[1]
    n_s = int(sessions.sum())
    slot = np.repeat(np.arange(len(users)), sessions)
    s_user = users[slot]
    s_rank = np.arange(n_s) - np.repeat(_group_starts(sessions), sessions)

    # --- when: anchors with daily seasonality, sorted per user --------------------------------
    day = rng.integers(0, config.days, size=n_s)
    evening = rng.random(n_s) < 0.7
    hour = np.where(evening, rng.normal(20.5, 2.5, size=n_s), rng.uniform(6.0, 24.0, size=n_s))
    anchor = day * DAY_MS + (np.mod(hour, 24.0) * HOUR_MS).astype(np.int64)
    anchor = anchor[np.lexsort((anchor, slot))]
    ret = (s_rank > 0) & (rng.random(n_s) < config.return_session_prob)
    prev = np.maximum(np.arange(n_s) - 1, 0)
    # A return session starts right after the previous one, so its start is only bounded below by
    # the anchor of the last regular session; items created later must not be shown in it.
    big = np.int64(1) << np.int64(42)
    offset = slot.astype(np.int64) * big
    avail = np.maximum.accumulate(np.where(ret, -(np.int64(1) << np.int64(40)), anchor) + offset)
    avail -= offset

    # --- intent: target market, category, brand, latent vector -------------------------------
    home = world.user_home[s_user]
    dest = rng.choice(len(world.market_names), size=n_s, p=world.market_weight)
    s_market = np.where(rng.random(n_s) < config.home_market_prob, home, dest)
    s_cat = _sample_rows(np.cumsum(world.user_taste[s_user], axis=1), rng.random(n_s))
    keep_trip = ret & (rng.random(n_s) < 0.7)
    s_market = np.where(keep_trip, s_market[prev], s_market)
    s_cat = np.where(keep_trip, s_cat[prev], s_cat)
    wants_brand = rng.random(n_s) < 0.3
    pick = (rng.random(n_s) * world.cat_brand_count[s_cat]).astype(np.int64)
    s_brand = np.where(wants_brand, world.cat_brands[s_cat, pick], -1)
    s_noise = rng.normal(scale=0.35 / np.sqrt(dim), size=(n_s, dim))

    # --- searches --------------------------------------------------------------------------
    n_search = np.minimum(rng.geometric(0.45, size=n_s), 8)
    n_q = int(n_search.sum())
    q_sess = np.repeat(np.arange(n_s), n_search)
    q_step = np.arange(n_q) - np.repeat(_group_starts(n_search), n_search)
    q_user = s_user[q_sess]
    q_cat = s_cat[q_sess].copy()
    switch = (q_step > 0) & (rng.random(n_q) < 0.15)
    alt_cat = _sample_rows(np.cumsum(world.user_taste[q_user], axis=1), rng.random(n_q))
    q_cat[switch] = alt_cat[switch]
    q_brand = np.where(switch, -1, s_brand[q_sess])
    add_brand = (q_step > 0) & (q_brand < 0) & ~switch & (rng.random(n_q) < 0.1)
    pick = (rng.random(n_q) * world.cat_brand_count[q_cat]).astype(np.int64)
    q_brand = np.where(add_brand, world.cat_brands[q_cat, pick], q_brand)
    q_market = s_market[q_sess]
    q_personal = world.user_idio[q_user] + s_noise[q_sess]

    has_market = rng.random(n_q) < 0.85
    has_cat = rng.random(n_q) < np.where(q_step > 0, 0.9, 0.75)
    has_brand = (q_brand >= 0) & (rng.random(n_q) < 0.85)
    adj = np.where(
        rng.random(n_q) < np.where(q_step > 0, 0.45, 0.2),
        rng.integers(len(ADJECTIVES), size=n_q),
        -1,
    )
    cheap = world.user_budget[q_user] < BASE_LOG_PRICE
    price_word = (q_step > 0) & (rng.random(n_q) < 0.15)
    has_market |= ~has_cat & ~has_brand & (adj < 0) & ~price_word  # never an empty query
    order = (rng.random(n_q) < 0.25).astype(np.int64)
    typo = rng.random(n_q) < config.typo_rate
    zh = world.user_zh[q_user]
    queries = _query_texts(
        world,
        q_market=np.where(has_market, q_market, -1),
        q_cat=np.where(has_cat, q_cat, -1),
        q_brand=np.where(has_brand, q_brand, -1),
        adj=adj,
        price_word=np.where(price_word, np.where(cheap, 0, 1), -1),
        zh=zh,
        order=order,
        typo=typo,
        rng=stream(config, "text", chunk),
    )

    # --- results and the true click model ---------------------------------------------------
    results = _rank_results(
        rng,
        world,
        q_market,
        np.where(has_cat, q_cat, -1),
        np.where(has_brand, q_brand, -1),
        np.where(price_word, np.where(cheap, 0, 1), -1),
        avail[q_sess],
    )
    n_shown = rng.integers(10, MAX_RESULTS + 1, size=n_q)
    shown = (results >= 0) & (np.arange(MAX_RESULTS)[None, :] < n_shown[:, None])
    imp_q, imp_col = np.nonzero(shown)
    imp_item = results[imp_q, imp_col]
    imp_pos = (imp_col + 1).astype(np.int64)
    imp_user = q_user[imp_q]
    i_vec = world.item_vec[imp_item]
    cat_aff = np.einsum("ij,ij->i", world.centres[q_cat[imp_q]], i_vec)
    personal = np.einsum("ij,ij->i", q_personal[imp_q], i_vec)
    overprice = np.maximum(world.item_log_price[imp_item] - world.user_budget[imp_user], 0.0)
    logit = (
        ATTR_BIAS
        + ATTR_CATEGORY * cat_aff
        + ATTR_PERSONAL * personal
        + ATTR_QUALITY * np.minimum(world.item_logq[imp_item], QUALITY_CAP)
        + ATTR_BRAND * ((world.item_brand[imp_item] == q_brand[imp_q]) & (q_brand[imp_q] >= 0))
        - ATTR_PRICE * world.user_sens[imp_user] * overprice
    )
    p_attract = _sigmoid(logit)
    # One uniform per impression, drawn where the independent model drew it, so every later
    # random number (and column) is unchanged; the sampler walks each list top-down.
    u = np.ones((n_q, MAX_RESULTS))
    u[imp_q, imp_col] = rng.random(len(p_attract))
    attract = np.zeros((n_q, MAX_RESULTS))
    attract[imp_q, imp_col] = p_attract
    brand = np.where(shown, world.item_brand[np.maximum(results, 0)], -1)
    clicked_m, p_m = sample_clicks(
        attract,
        brand,
        shown,
        u,
        strength=config.context_strength,
        continue_after_click=config.continue_after_click,
    )
    p_click = p_m[imp_q, imp_col]
    clicked = clicked_m[imp_q, imp_col]

    # --- clicks: dwell and time within the search --------------------------------------------
    ck_rows = np.flatnonzero(clicked)
    c_q = imp_q[ck_rows]
    n_c = len(ck_rows)
    accidental = rng.random(n_c) < 0.06
    dwell = np.where(
        accidental,
        rng.integers(500, 4_500, size=n_c),
        np.clip(rng.lognormal(np.log(40_000) + 0.5 * logit[ck_rows], 0.7), 5_000, HOUR_MS),
    ).astype(np.int64)
    step_ms = dwell + rng.integers(1_500, 8_000, size=n_c)
    c_rel = (
        1_000
        + imp_pos[ck_rows] * 700
        + rng.integers(0, 2_000, size=n_c)
        + _exclusive_cumsum(step_ms, c_q)
    )
    q_dur = 2_000 + n_shown * 400 + rng.integers(0, 5_000, size=n_q)
    np.maximum.at(q_dur, c_q, c_rel + dwell)
    think = np.minimum(rng.lognormal(np.log(20_000), 0.8, size=n_q), 10 * MINUTE_MS)
    q_rel = _exclusive_cumsum(q_dur + think.astype(np.int64), q_sess)
    s_end = np.zeros(n_s, dtype=np.int64)
    np.maximum.at(s_end, q_sess, q_rel + q_dur)

    # --- bookings and carts -----------------------------------------------------------------
    c_sess = q_sess[c_q]
    c_item = imp_item[ck_rows]
    c_p_book, book_item, cart_item = _bookings(rng, c_sess, c_item, logit[ck_rows], n_s)
    booked, cart = book_item >= 0, cart_item >= 0
    cart_rel = s_end + rng.integers(20_000, 120_000, size=n_s)
    book_rel = np.where(cart, cart_rel, s_end) + rng.integers(60_000, 400_000, size=n_s)
    dur = np.where(booked, book_rel, np.where(cart, cart_rel, s_end)) + 1

    # --- timeline: sessions of a user never overlap; some return after 20-40 minutes --------
    gap = np.where(
        ret,
        rng.integers(20 * MINUTE_MS, 40 * MINUTE_MS, size=n_s),
        31 * MINUTE_MS + rng.exponential(2 * HOUR_MS, size=n_s).astype(np.int64),
    )
    step = np.where(s_rank > 0, dur[prev] + gap, 0)
    chain = _exclusive_cumsum(step, slot) + step  # inclusive cumulative offset per user
    wish = np.where(ret, -(np.int64(1) << np.int64(40)), anchor)
    s_start = np.maximum.accumulate(wish - chain + offset) - offset + chain
    base = config.start_ms + s_start

    # --- assemble events ---------------------------------------------------------------------
    q_ts = base[q_sess] + q_rel
    n_i = len(imp_q)
    parts = [
        _block(
            n_q,
            event_type=SEARCH,
            ts=q_ts,
            sess=q_sess,
            query=np.arange(n_q),
            request=np.arange(n_q),
            market=q_market,
            cat=q_cat,
            brand=q_brand,
            tie=0,
        ),
        _block(
            n_i,
            event_type=IMPRESSION,
            ts=q_ts[imp_q] + 200,
            sess=q_sess[imp_q],
            item=imp_item,
            request=imp_q,
            position=imp_pos,
            market=q_market[imp_q],
            p_click=p_click,
            p_attract=p_attract,
            cat=q_cat[imp_q],
            brand=q_brand[imp_q],
            tie=imp_pos,
        ),
        _block(
            n_c,
            event_type=CLICK,
            ts=q_ts[c_q] + c_rel,
            sess=c_sess,
            item=c_item,
            request=c_q,
            position=imp_pos[ck_rows],
            market=q_market[c_q],
            dwell=dwell,
            p_click=p_click[ck_rows],
            p_attract=p_attract[ck_rows],
            p_book=c_p_book,
            cat=q_cat[c_q],
            brand=q_brand[c_q],
            tie=100 + imp_pos[ck_rows],
        ),
    ]
    for code, rel, items, tie in (
        (CART, cart_rel, cart_item, 200),
        (BOOKING, book_rel, book_item, 201),
    ):
        ss = np.flatnonzero(items >= 0)
        parts.append(
            _block(
                len(ss),
                event_type=code,
                ts=base[ss] + rel[ss],
                sess=ss,
                item=items[ss],
                market=s_market[ss],
                cat=s_cat[ss],
                brand=s_brand[ss],
                tie=tie,
            )
        )
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    n_ev = len(cols["ts"])
    kept_sessions = n_s
    if max_events is not None and n_ev > max_events:
        per_sess = np.bincount(cols["sess"], minlength=n_s)
        kept_sessions = int(np.searchsorted(np.cumsum(per_sess), max_events, side="right"))
        if kept_sessions == 0 and at_least_one:  # a tiny n_events still gets one whole session
            kept_sessions = 1
        keep = cols["sess"] < kept_sessions
        cols = {k: v[keep] for k, v in cols.items()}
        imp_keep = q_sess[imp_q] < kept_sessions
        p_click, clicked = p_click[imp_keep], clicked[imp_keep]
        n_q = int(np.searchsorted(q_sess, kept_sessions))
        queries = queries[:n_q]
    srt = np.lexsort((cols["tie"], cols["ts"]))
    cols = {k: v[srt] for k, v in cols.items()}
    item = cols["item"]
    return ChunkEvents(
        event_type=cols["event_type"].astype(np.int64),
        ts=cols["ts"].astype(np.int64),
        user=s_user[cols["sess"]],
        item=item,
        query=cols["query"],
        request=cols["request"],
        position=cols["position"],
        market=cols["market"],
        price=np.where(item >= 0, world.item_price[np.maximum(item, 0)], np.nan),
        dwell=cols["dwell"],
        p_click=cols["p_click"],
        p_attract=cols["p_attract"],
        p_book=cols["p_book"],
        intent_cat=cols["cat"],
        intent_brand=cols["brand"],
        intent_market=cols["market"],
        session=cols["sess"],
        queries=queries,
        n_searches=n_q,
        n_sessions=kept_sessions,
        imp_p=p_click,
        imp_clicked=clicked,
    )
