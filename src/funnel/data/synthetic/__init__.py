"""The synthetic marketplace: a lodging-like market with known ground truth.

Markets (cities) of heavy-tailed size, items with category, brand, price and bilingual titles,
users with long-term tastes and per-session intents, searches with typos, a noisy production
ranker, position-biased clicks in list context (a top-down scan that may stop after a click;
same-brand near-duplicates cannibalize each other) with dwell times, carts and bookings. The TRUE
click probability of each impression and booking probability of each click go to the ``truth``
table, so the Bayes-optimal AUC/logloss of any click model is a number.

What the tables hold (beyond the contract schemas):

- ``search`` events carry the query and a ``request_id``; the ``impression`` events of that
  request follow 200 ms later with 1-based ``position`` (10-20 results from the target market),
  then ``click`` events (with ``dwell_ms``) on some of them. A session may end in
  ``add_to_cart`` and/or one ``booking`` of a clicked item (no request_id).
- ``truth`` has one row per event: ``p_click`` (the true click probability of the impression in
  its list) and ``p_attract`` (context-free attraction, see ``context.py``) on impressions and
  clicks, ``p_book`` on clicks (the true probability that this click's item is booked in its
  session), and the search's ``intent_*`` (its relevant items are those of that
  category/brand in that market).
- Events are sorted by time within each chunk of users, not globally; event ids are unique
  (``e0000000042``), request ids look like ``r000000007``.

Example::

    tables = generate_tables(MarketplaceConfig(n_events=50_000, seed=1))
    summary = generate(MarketplaceConfig(n_events=1_000_000), Path("out"))
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from funnel.data.schema import EVENT_SCHEMA, EVENT_TYPES, ITEM_SCHEMA, TRUTH_SCHEMA, USER_SCHEMA
from funnel.data.synthetic._config import GenerationSummary, MarketplaceConfig
from funnel.data.synthetic._simulate import ChunkEvents, plan_sessions, simulate_chunk
from funnel.data.synthetic._text import (
    PRICE_BAND_EDGES,
    PRICE_BANDS,
    item_attributes,
    item_titles,
    price_band,
)
from funnel.data.synthetic._world import World, build_world, item_ids, stream, user_ids

__all__ = [
    "PRICE_BANDS",
    "PRICE_BAND_EDGES",
    "GenerationSummary",
    "MarketplaceConfig",
    "bayes_metrics",
    "generate",
    "generate_tables",
    "iter_event_chunks",
    "latent_state",
    "price_band",
    "summarize",
]

_DEVICES = ("mobile", "desktop", "tablet")


def bayes_metrics(p_click: np.ndarray, clicked: np.ndarray) -> tuple[float, float]:
    """(AUC, logloss) of probabilities ``p_click`` against binary labels ``clicked``.

    AUC is the Mann-Whitney statistic with average ranks for ties; logloss clips p to
    [1e-15, 1 - 1e-15]. Applied to the true p_click it gives the Bayes-optimal figures.
    """
    p = np.asarray(p_click, dtype=np.float64)
    y = np.asarray(clicked)
    if p.ndim != 1 or p.shape != y.shape:
        raise ValueError(
            f"bayes_metrics: 'p_click' and 'clicked' must be 1-D of equal length, "
            f"got shapes {p.shape} and {y.shape}"
        )
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("bayes_metrics: 'clicked' must hold only 0/1 or booleans")
        y = y.astype(bool)
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("bayes_metrics: 'p_click' must be probabilities in [0, 1] without NaN")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"bayes_metrics: need both classes, got {n_pos} positives and {n_neg} negatives"
        )
    order = np.argsort(p, kind="mergesort")
    sp, sy = p[order], y[order]
    del order
    first = np.empty(len(sp), dtype=bool)
    first[0] = True
    np.not_equal(sp[1:], sp[:-1], out=first[1:])
    group = np.cumsum(first) - 1  # tie group of each sorted row
    start = np.flatnonzero(first)
    stop = np.append(start[1:], len(sp))
    avg_rank = (start + stop + 1) / 2.0  # 1-based average rank of each tie group
    pos_in_group = np.bincount(group, weights=sy, minlength=len(start))
    auc = ((avg_rank * pos_in_group).sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    total = 0.0
    for i in range(0, len(p), 1 << 20):  # slices keep the temporaries small on big runs
        q = np.clip(p[i : i + (1 << 20)], 1e-15, 1 - 1e-15)
        yi = y[i : i + (1 << 20)]
        total += float(np.log(q[yi]).sum() + np.log1p(-q[~yi]).sum())
    logloss = -total / len(p)
    return float(auc), float(logloss)


def latent_state(config: MarketplaceConfig) -> dict[str, np.ndarray]:
    """Ground-truth geometry regenerated from the seed (never written to the contract tables).

    Keys: item_vectors (n, d, unit rows), item_ids, item_quality (log quality), item_category,
    item_market (indices into category_names/market_names), user_ids, user_taste (u, n_categories
    mixture), user_vectors (u, d: the taste's centre mix plus the personal direction),
    user_personal (u, d: the personal direction alone, which drives clicks within a category),
    category_centres, category_names, market_names.
    """
    w = build_world(config)
    user_vec = w.user_taste @ w.centres + w.user_idio
    return {
        "item_vectors": w.item_vec.astype(np.float32),
        "item_ids": np.array(item_ids(len(w.item_market))),
        "item_quality": w.item_logq,
        "item_category": w.item_cat,
        "item_market": w.item_market,
        "user_ids": np.array(user_ids(len(w.user_home))),
        "user_taste": w.user_taste,
        "user_vectors": user_vec.astype(np.float32),
        "user_personal": w.user_idio.astype(np.float32),
        "category_centres": w.centres,
        "category_names": np.array(w.cat_names),
        "market_names": np.array(w.market_names),
    }


def _items_table(config: MarketplaceConfig, w: World) -> pa.Table:
    rng = stream(config, "text")
    n = len(w.item_market)
    cat_en = [w.cat_names[c] for c in w.item_cat]
    titles = item_titles(
        rng,
        [w.brand_names[b] for b in w.item_brand],
        cat_en,
        [w.cat_zh[c] for c in w.item_cat],
        [w.market_names[m] for m in w.item_market],
        [w.market_zh[m] for m in w.item_market],
    )
    cat_off = w.item_log_price - np.log(110.0)
    rooms = np.clip(np.round(rng.lognormal(np.log(1.8) + 0.4 * cat_off, 0.4)), 1, 10)
    guests = rooms * 2 - (rng.random(n) < 0.3)
    rating = np.round(3.4 + 1.6 * (1.0 - np.exp(-(w.item_logq + rng.normal(0, 0.2, n)).clip(0))), 1)
    attrs = item_attributes(price_band(w.item_price), rooms, rating, guests)
    table = pa.table(
        {
            "item_id": pa.array(item_ids(n)),
            "title": pa.array(titles),
            "category": pa.array(cat_en),
            "brand": pa.array([w.brand_names[b] for b in w.item_brand]),
            "market": pa.array([w.market_names[m] for m in w.item_market]),
            "price": pa.array(w.item_price),
            "bid": pa.array(w.item_bid, mask=np.isnan(w.item_bid)),
            "attributes": pa.array(attrs),
            "created_at": pa.array(config.start_ms + w.item_created_ms, type=pa.int64()),
        }
    )
    return table.cast(ITEM_SCHEMA)


def _users_table(w: World) -> pa.Table:
    attrs = [
        json.dumps(
            {
                "language": "zh" if z else "en",
                "device": _DEVICES[d],
                "home_market": w.market_names[h],
            }
        )
        for z, d, h in zip(w.user_zh, w.user_device, w.user_home, strict=True)
    ]
    table = pa.table({"user_id": pa.array(user_ids(len(w.user_home))), "attributes": attrs})
    return table.cast(USER_SCHEMA)


def _ids(prefix: str, idx: np.ndarray, width: int) -> pa.Array:
    """Zero-padded string ids (``e0000000042``) built in Arrow, nulls where ``idx < 0``."""
    arr = pa.array(idx, type=pa.int64(), mask=idx < 0)
    text = pc.utf8_lpad(pc.cast(arr, pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, text, "")


def _take(values: list[str], idx: np.ndarray) -> pa.Array:
    return pa.array(values).take(pa.array(idx, type=pa.int64(), mask=idx < 0))


def _chunk_tables(
    w: World, c: ChunkEvents, event_offset: int, request_offset: int, names: dict[str, list[str]]
) -> tuple[pa.Table, pa.Table]:
    n = len(c.ts)
    event_id = _ids("e", event_offset + np.arange(n, dtype=np.int64), 10)
    req = np.where(c.request >= 0, c.request + request_offset, -1)
    events = pa.table(
        {
            "event_id": event_id,
            "ts": pa.array(c.ts, type=pa.int64()),
            "user_id": _take(names["users"], c.user),
            "event_type": _take(list(EVENT_TYPES), c.event_type),
            "item_id": _take(names["items"], c.item),
            "query": _take(c.queries, c.query),
            "request_id": _ids("r", req, 9),
            "position": pa.array(c.position, type=pa.int64(), mask=c.position < 0),
            "market": _take(w.market_names, c.market),
            "price": pa.array(c.price, mask=np.isnan(c.price)),
            "dwell_ms": pa.array(c.dwell, type=pa.int64(), mask=c.dwell < 0),
        }
    )
    truth = pa.table(
        {
            "event_id": event_id,
            "p_click": pa.array(c.p_click, mask=np.isnan(c.p_click)),
            "p_attract": pa.array(c.p_attract, mask=np.isnan(c.p_attract)),
            "p_book": pa.array(c.p_book, mask=np.isnan(c.p_book)),
            "intent_category": _take(w.cat_names, c.intent_cat),
            "intent_brand": _take(w.brand_names, c.intent_brand),
            "intent_market": _take(w.market_names, c.intent_market),
        }
    )
    return events.cast(EVENT_SCHEMA), truth.cast(TRUTH_SCHEMA)


def iter_event_chunks(
    config: MarketplaceConfig, world: World | None = None
) -> Iterator[tuple[pa.Table, pa.Table, ChunkEvents]]:
    """Yield (events, truth, raw chunk) per chunk of users, stopping at ``config.n_events``.

    The raw chunk carries what the contract tables leave out, aligned with the event rows:
    ``chunk.session`` is the TRUE (generated) session number of each event, a ground truth for
    testing sessionization; ``imp_p``/``imp_clicked`` are per impression.
    """
    w = build_world(config) if world is None else world
    plan = plan_sessions(config, w)
    names = {"users": user_ids(len(w.user_home)), "items": item_ids(len(w.item_market))}
    done = 0
    requests = 0
    sessions = 0
    for k, (a, b) in enumerate(plan.chunks):
        remaining = config.n_events - done
        if remaining <= 0:
            break
        users = np.arange(a, b)
        chunk = simulate_chunk(
            config, w, users, plan.sessions[a:b], k, max_events=remaining, at_least_one=done == 0
        )
        if len(chunk.ts) == 0:
            break
        events, truth = _chunk_tables(w, chunk, done, requests, names)
        chunk.session = chunk.session + sessions
        done += len(chunk.ts)
        requests += chunk.n_searches
        sessions += chunk.n_sessions
        yield events, truth, chunk


def generate_tables(config: MarketplaceConfig) -> dict[str, pa.Table]:
    """In memory: {"items", "users", "events", "truth"} in the contract schemas."""
    if not isinstance(config, MarketplaceConfig):
        raise TypeError(f"generate_tables: expected a MarketplaceConfig, got {type(config)!r}")
    w = build_world(config)
    ev, tr = [], []
    for events, truth, _ in iter_event_chunks(config, w):
        ev.append(events)
        tr.append(truth)
    return {
        "items": _items_table(config, w),
        "users": _users_table(w),
        "events": pa.concat_tables(ev) if ev else EVENT_SCHEMA.empty_table(),
        "truth": pa.concat_tables(tr) if tr else TRUTH_SCHEMA.empty_table(),
    }


def generate(
    config: MarketplaceConfig,
    out_dir: Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> GenerationSummary:
    """Stream to Parquet: items.parquet, users.parquet, events/part-*.parquet, truth/part-*,
    summary.json. ``progress(n_events_done)`` is called after each chunk."""
    if not isinstance(config, MarketplaceConfig):
        raise TypeError(f"generate: expected a MarketplaceConfig, got {type(config)!r}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"generate: out_dir {str(out)!r} exists and is not a directory")
    (out / "events").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    for sub in ("events", "truth"):
        for old in (out / sub).glob("part-*.parquet"):
            old.unlink()
    w = build_world(config)
    items, users = _items_table(config, w), _users_table(w)
    pq.write_table(items, out / "items.parquet")
    pq.write_table(users, out / "users.parquet")
    counts = dict.fromkeys(EVENT_TYPES, 0)
    done = 0
    ps, ys = [], []
    for k, (events, truth, chunk) in enumerate(iter_event_chunks(config, w)):
        pq.write_table(events, out / "events" / f"part-{k:05d}.parquet")
        pq.write_table(truth, out / "truth" / f"part-{k:05d}.parquet")
        for code, cnt in zip(*np.unique(chunk.event_type, return_counts=True), strict=True):
            counts[EVENT_TYPES[code]] += int(cnt)
        ps.append(chunk.imp_p.astype(np.float64))
        ys.append(chunk.imp_clicked)
        done += len(chunk.ts)
        if progress is not None:
            progress(done)
    summary = _summary(config, w, counts, done, ps, ys, time.perf_counter() - t0)
    record = {"config": asdict(config), **asdict(summary),
              "clicks_per_item": summary.clicks_per_item}
    record = {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in record.items()}
    (out / "summary.json").write_text(json.dumps(record, indent=2, allow_nan=False))
    return summary


def summarize(config: MarketplaceConfig, tables: dict[str, pa.Table]) -> GenerationSummary:
    """The summary of tables from :func:`generate_tables` (reads truth p_click of impressions)."""
    t0 = time.perf_counter()
    ev, tr = tables["events"], tables["truth"]
    types = ev["event_type"].to_numpy(zero_copy_only=False)
    counts = {t: int((types == t).sum()) for t in EVENT_TYPES}
    imp = types == "impression"
    p = tr["p_click"].to_numpy(zero_copy_only=False)[imp]
    req = ev["request_id"].to_numpy(zero_copy_only=False)
    item = ev["item_id"].to_numpy(zero_copy_only=False)
    clicked_keys = {
        (r, i) for r, i in zip(req[types == "click"], item[types == "click"], strict=True)
    }
    y = np.array([(r, i) in clicked_keys for r, i in zip(req[imp], item[imp], strict=True)])
    w_items, w_users = tables["items"].num_rows, tables["users"].num_rows
    counts = {
        "items": w_items,
        "users": w_users,
        "events": ev.num_rows,
        "truth": tr.num_rows,
        **counts,
    }
    auc, ll = bayes_metrics(p, y)
    return GenerationSummary(
        counts=counts,
        n_items=w_items,
        n_users=w_users,
        base_ctr=float(y.mean()),
        bayes_auc=auc,
        bayes_logloss=ll,
        seconds=time.perf_counter() - t0,
    )


def _summary(
    config: MarketplaceConfig,
    w: World,
    counts: dict[str, int],
    n_events: int,
    ps: list[np.ndarray],
    ys: list[np.ndarray],
    seconds: float,
) -> GenerationSummary:
    p = np.concatenate(ps) if ps else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0, dtype=bool)
    auc, ll = bayes_metrics(p, y) if 0 < y.sum() < len(y) else (float("nan"), float("nan"))
    full = {
        "items": len(w.item_market),
        "users": len(w.user_home),
        "events": n_events,
        "truth": n_events,
        **counts,
    }
    return GenerationSummary(
        counts=full,
        n_items=len(w.item_market),
        n_users=len(w.user_home),
        base_ctr=float(y.mean()) if len(y) else float("nan"),
        bayes_auc=auc,
        bayes_logloss=ll,
        seconds=seconds,
    )
