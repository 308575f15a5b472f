"""Synthetic marketplace: contract, determinism, and the structure other stages learn from."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _strings import osa_distance
from funnel.config import from_mapping, to_mapping
from funnel.data.schema import EVENT_TYPES, SCHEMAS
from funnel.data.synthetic import (
    GenerationSummary,
    MarketplaceConfig,
    bayes_metrics,
    generate,
    generate_tables,
    iter_event_chunks,
    latent_state,
    price_band,
    summarize,
)
from funnel.data.synthetic._text import add_typo
from funnel.data.synthetic._vocab import (
    ADJECTIVES,
    BRAND_HEADS,
    BRAND_TAILS,
    CATEGORIES,
    MARKETS,
    PRICE_WORDS,
)
from funnel.exceptions import ConfigError

CJK = re.compile(r"[\u4e00-\u9fff]")
CONFIG = MarketplaceConfig(n_events=60_000, seed=3, chunk_sessions=512)


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return generate_tables(CONFIG)


@pytest.fixture(scope="module")
def ev(tables: dict[str, pa.Table]) -> pd.DataFrame:
    """Events joined with their truth rows, as a DataFrame."""
    df = tables["events"].to_pandas()
    truth = tables["truth"].to_pandas()
    assert (df["event_id"].to_numpy() == truth["event_id"].to_numpy()).all()
    return pd.concat([df, truth.drop(columns="event_id")], axis=1)


@pytest.fixture(scope="module")
def impressions(ev: pd.DataFrame) -> pd.DataFrame:
    """Impressions with their click label (a click on the same request and item)."""
    imp = ev[ev.event_type == "impression"].copy()
    clk = ev[ev.event_type == "click"][["request_id", "item_id"]].assign(clicked=True)
    imp = imp.merge(clk, on=["request_id", "item_id"], how="left")
    imp["clicked"] = imp["clicked"].fillna(False).astype(bool)
    return imp


# --- contract -------------------------------------------------------------------------------


def test_tables_match_contract_schemas_exactly(tables: dict[str, pa.Table]) -> None:
    assert set(tables) == {"items", "users", "events", "truth"}
    for name, table in tables.items():
        assert table.schema.equals(SCHEMAS[name]), name


def test_event_count_close_to_requested_and_ids_unique(tables: dict[str, pa.Table]) -> None:
    n = tables["events"].num_rows
    assert CONFIG.n_events * 0.97 <= n <= CONFIG.n_events
    ids = tables["events"]["event_id"].to_pylist()
    assert len(set(ids)) == n
    assert tables["truth"].num_rows == n
    assert tables["items"].num_rows == CONFIG.items == 600
    assert tables["users"].num_rows == CONFIG.users == 300
    assert len(set(tables["items"]["item_id"].to_pylist())) == 600


def test_event_type_mix_is_plausible(ev: pd.DataFrame) -> None:
    counts = ev.event_type.value_counts()
    assert set(counts.index) == set(EVENT_TYPES)
    searches, imps = counts["search"], counts["impression"]
    assert 10 <= imps / searches <= 20  # 10-20 results per search
    assert 0.05 <= counts["click"] / imps <= 0.16
    assert counts["booking"] < counts["click"] / 4
    assert counts["add_to_cart"] > 0


def test_required_fields_per_event_type(ev: pd.DataFrame) -> None:
    s = ev[ev.event_type == "search"]
    assert s["query"].notna().all() and s["item_id"].isna().all()
    assert s["request_id"].notna().all() and s["intent_category"].notna().all()
    items = ev[ev.event_type != "search"]
    assert items["item_id"].notna().all() and items["query"].isna().all()
    assert items["price"].gt(0).all() and ev["market"].notna().all()
    imp = ev[ev.event_type == "impression"]
    assert imp["position"].between(1, 20).all() and imp["p_click"].notna().all()
    clk = ev[ev.event_type == "click"]
    assert clk["dwell_ms"].gt(0).all() and clk["p_book"].between(0, 1).all()
    assert ev[ev.event_type.isin(["search", "impression"])]["dwell_ms"].isna().all()
    b = ev[ev.event_type == "booking"]
    assert b["request_id"].isna().all() and b["p_book"].isna().all()


def test_booking_item_belongs_to_booked_market(ev: pd.DataFrame, tables) -> None:
    items = tables["items"].to_pandas().set_index("item_id")
    for kind in ("booking", "add_to_cart", "impression", "click"):
        rows = ev[ev.event_type == kind]
        assert len(rows) > 0
        assert (items.loc[rows.item_id, "market"].to_numpy() == rows.market.to_numpy()).all()
        assert np.allclose(items.loc[rows.item_id, "price"].to_numpy(), rows.price.to_numpy())


def test_every_click_follows_its_impression_and_search(ev: pd.DataFrame) -> None:
    clk = ev[ev.event_type == "click"]
    imp = ev[ev.event_type == "impression"][["request_id", "item_id", "ts", "position", "user_id"]]
    m = clk.merge(imp, on=["request_id", "item_id"], how="left", suffixes=("", "_imp"))
    assert len(m) == len(clk) and m["ts_imp"].notna().all()
    assert (m["ts_imp"] < m["ts"]).all()
    assert (m["position_imp"] == m["position"]).all() and (m["user_id_imp"] == m["user_id"]).all()
    srch = ev[ev.event_type == "search"].set_index("request_id")
    assert srch.index.is_unique
    assert (srch.loc[imp.request_id, "ts"].to_numpy() < imp.ts.to_numpy()).all()


def test_impressions_of_a_request_are_distinct_consecutive_positions(ev: pd.DataFrame) -> None:
    imp = ev[ev.event_type == "impression"]
    g = imp.groupby("request_id")
    assert (g.item_id.nunique() == g.size()).all()
    assert (g.position.max() == g.size()).all() and (g.position.min() == 1).all()
    assert g.market.nunique().eq(1).all()


def test_items_never_shown_before_they_exist(ev: pd.DataFrame, tables) -> None:
    items = tables["items"].to_pandas().set_index("item_id")
    start = pd.Timestamp(CONFIG.start, tz="UTC")
    new = items.created_at > start
    assert 0.08 < new.mean() < 0.25  # cold-start items arrive during the span
    imp = ev[ev.event_type == "impression"]
    created = items.loc[imp.item_id, "created_at"]
    assert (created.to_numpy() <= imp.ts.to_numpy()).all()
    assert imp.item_id.isin(items.index[new]).any()


def test_item_attributes_titles_and_bids(tables: dict[str, pa.Table]) -> None:
    items = tables["items"].to_pandas()
    attrs = items.attributes.map(json.loads)
    assert set(attrs.iloc[0]) >= {"price_band", "rooms", "rating"}
    assert (attrs.map(lambda a: a["price_band"]).to_numpy() == price_band(items.price)).all()
    assert attrs.map(lambda a: 1.0 <= a["rating"] <= 5.0).all()
    assert items.title.map(lambda t: bool(CJK.search(t))).all()
    assert items.title.str.contains(r"[a-z]{3}").all()
    sponsored = items.bid.notna().mean()
    assert abs(sponsored - CONFIG.sponsored_fraction) < 0.05
    assert (items.bid.dropna() > 0).all()
    users = tables["users"].to_pandas().attributes.map(json.loads)
    langs = users.map(lambda a: a["language"]).value_counts(normalize=True)
    assert 0.1 < langs["zh"] < 0.7


def test_markets_have_heavy_tailed_sizes(tables: dict[str, pa.Table]) -> None:
    sizes = tables["items"].to_pandas().market.value_counts().to_numpy()
    assert len(sizes) == CONFIG.n_markets
    assert sizes[0] > 3 * sizes[-1]


# --- truth and click model ------------------------------------------------------------------


def test_p_click_is_calibrated_per_decile(impressions: pd.DataFrame) -> None:
    p, y = impressions.p_click.to_numpy(), impressions.clicked.to_numpy()
    assert ((p > 0) & (p < 1)).all()
    edges = np.quantile(p, np.linspace(0, 1, 11))
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    for b in range(10):
        sel = bins == b
        mean_p, rate = p[sel].mean(), y[sel].mean()
        se = math.sqrt(mean_p * (1 - mean_p) / sel.sum())
        assert abs(rate - mean_p) < 4 * se + 0.005, (b, mean_p, rate)


def test_bayes_metrics_in_target_band(impressions: pd.DataFrame, tables) -> None:
    auc, ll = bayes_metrics(impressions.p_click.to_numpy(), impressions.clicked.to_numpy())
    assert 0.75 <= auc <= 0.88
    base = impressions.clicked.mean()
    prior_ll = -(base * math.log(base) + (1 - base) * math.log(1 - base))
    assert ll < prior_ll - 0.02  # the truth beats the constant predictor
    summary = summarize(CONFIG, tables)
    assert summary.bayes_auc == pytest.approx(auc) and summary.base_ctr == pytest.approx(base)


def test_position_bias_visible(impressions: pd.DataFrame) -> None:
    ctr = impressions.groupby("position").clicked.mean()
    assert ctr.loc[1] > 2 * ctr.loc[10]
    assert ctr.loc[1] > ctr.loc[3] > ctr.loc[6] > ctr.loc[12]


def test_user_matters_for_clicks(impressions: pd.DataFrame) -> None:
    """Knowing the user's personal direction ranks clicks better than the query alone: a
    personalized model has real headroom over one that ignores the user."""
    lat = latent_state(CONFIG)
    item_row = {k: i for i, k in enumerate(lat["item_ids"])}
    user_row = {k: i for i, k in enumerate(lat["user_ids"])}
    cats = {c: i for i, c in enumerate(lat["category_names"])}
    vec = lat["item_vectors"][impressions.item_id.map(item_row).to_numpy()]
    centre = lat["category_centres"][impressions.intent_category.map(cats).to_numpy()]
    personal = lat["user_personal"][impressions.user_id.map(user_row).to_numpy()]
    s_anon = -0.75 * np.log(impressions.position.to_numpy()) + 2.5 * np.einsum(
        "ij,ij->i", vec, centre
    )
    s_user = s_anon + 3.0 * np.einsum("ij,ij->i", vec, personal)
    y = impressions.clicked.to_numpy()
    auc_anon, _ = bayes_metrics(1 / (1 + np.exp(-s_anon)), y)
    auc_user, _ = bayes_metrics(1 / (1 + np.exp(-s_user)), y)
    assert auc_user > auc_anon + 0.03, (auc_user, auc_anon)


def test_booking_truth_matches_bookings() -> None:
    """Sum of p_book over distinct (session, item) clicks predicts the number of bookings."""
    cfg = MarketplaceConfig(n_events=60_000, seed=5)
    expected = booked = 0.0
    var = 0.0
    for events, truth, chunk in iter_event_chunks(cfg):
        types = events["event_type"].to_numpy(zero_copy_only=False)
        items = events["item_id"].to_numpy(zero_copy_only=False)
        pb = truth["p_book"].to_numpy(zero_copy_only=False)
        clk = types == "click"
        df = pd.DataFrame({"s": chunk.session[clk], "i": items[clk], "p": pb[clk]})
        per_item = df.drop_duplicates(["s", "i"])
        expected += per_item.p.sum()
        per_sess = per_item.groupby("s").p.sum()
        assert (per_sess <= 1 + 1e-9).all()
        var += (per_sess * (1 - per_sess)).sum()
        bk = types == "booking"
        booked += bk.sum()
        bdf = pd.DataFrame({"s": chunk.session[bk], "i": items[bk]})
        assert bdf.s.is_unique  # at most one booking per session
        hit = bdf.merge(per_item, on=["s", "i"], how="left")
        assert hit.p.notna().all()  # the booked item was clicked in that session
    assert booked > 50
    assert abs(booked - expected) < 4 * math.sqrt(var) + 1


def test_booked_items_score_higher_p_book(ev: pd.DataFrame) -> None:
    clk = ev[ev.event_type == "click"]
    bk = ev[ev.event_type == "booking"][["user_id", "item_id"]].assign(b=True)
    m = clk.merge(bk.drop_duplicates(), on=["user_id", "item_id"], how="left")
    booked = m.b.fillna(False).astype(bool)
    assert m.p_book[booked].mean() > 2 * m.p_book[~booked].mean()


def test_dwell_longer_for_likely_clicks_and_some_accidental(ev: pd.DataFrame) -> None:
    clk = ev[ev.event_type == "click"]
    accidental = (clk.dwell_ms < 5_000).mean()
    assert 0.02 < accidental < 0.12
    hi = clk.p_click > clk.p_click.median()
    assert clk.dwell_ms[hi].median() > 1.1 * clk.dwell_ms[~hi].median()


# --- structure ------------------------------------------------------------------------------


def test_clicks_in_a_session_share_market_and_latent_space(ev: pd.DataFrame) -> None:
    lat = latent_state(CONFIG)
    row = {k: i for i, k in enumerate(lat["item_ids"])}
    clk = ev[ev.event_type == "click"].sort_values(["user_id", "ts"])
    same_user = clk.user_id.to_numpy()[1:] == clk.user_id.to_numpy()[:-1]
    close = np.diff(clk.ts.to_numpy()) < np.timedelta64(30, "m")
    pair = same_user & close
    markets = clk.market.to_numpy()
    same_market = (markets[1:] == markets[:-1])[pair].mean()
    freq = clk.market.value_counts(normalize=True).to_numpy()
    chance = float((freq**2).sum())
    assert same_market > 0.9 and same_market > chance + 0.4
    v = lat["item_vectors"][clk.item_id.map(row).to_numpy()]
    cos = np.einsum("ij,ij->i", v[1:], v[:-1])
    rng = np.random.default_rng(0)
    shuffled = np.einsum("ij,ij->i", v[1:], v[rng.permutation(len(v) - 1)])
    assert cos[pair].mean() > shuffled.mean() + 0.2


def test_searches_retrieve_relevant_items(ev: pd.DataFrame, tables) -> None:
    """The production ranker puts intent-matching items in front, but not perfectly."""
    items = tables["items"].to_pandas().set_index("item_id")
    imp = ev[ev.event_type == "impression"]
    match = items.loc[imp.item_id, "category"].to_numpy() == imp.intent_category.to_numpy()
    top = imp.position.to_numpy() <= 3
    assert 0.5 < match[top].mean() < 0.98
    assert match[top].mean() > match[~top].mean()


def test_cheap_queries_get_cheaper_results(ev: pd.DataFrame, tables) -> None:
    items = tables["items"].to_pandas().set_index("item_id")
    q = ev[ev.event_type == "search"][["request_id", "query"]].rename(columns={"query": "q"})
    imp = ev[(ev.event_type == "impression") & (ev.position <= 5)].merge(q, on="request_id")
    low = price_band(items.loc[imp.item_id, "price"].to_numpy()) == "low"
    cheap = imp.q.str.contains("cheap|便宜").to_numpy()
    assert cheap.sum() > 100
    assert low[cheap].mean() > low[~cheap].mean() + 0.08


def test_sessions_do_not_overlap_and_some_return_within_40_minutes() -> None:
    gaps, users_sessions = [], 0
    for events, _, chunk in iter_event_chunks(MarketplaceConfig(n_events=40_000, seed=2)):
        df = pd.DataFrame(
            {
                "u": events["user_id"].to_numpy(zero_copy_only=False),
                "ts": events["ts"].cast(pa.int64()).to_numpy(),
                "s": chunk.session,
            }
        )
        span = df.groupby("s").agg(u=("u", "first"), a=("ts", "min"), b=("ts", "max"))
        assert df.groupby("s").u.nunique().eq(1).all()
        span = span.sort_values(["u", "a"])
        same = span.u.to_numpy()[1:] == span.u.to_numpy()[:-1]
        gap = span.a.to_numpy()[1:] - span.b.to_numpy()[:-1]
        gaps.append(gap[same])
        users_sessions += len(span)
    g = np.concatenate(gaps) / 60_000.0
    assert (g > 0).all()  # a user's sessions never overlap
    short = ((g >= 20) & (g <= 40)).mean()
    assert 0.04 < short < 0.25
    assert np.median(g) > 120  # usually hours apart


def test_thirty_minute_sessionization_merges_quick_returns() -> None:
    """A 20-minute gap recovers the true sessions; the 30-minute rule merges the quick returns
    (20-30 minutes after the previous session), so the choice of gap visibly matters."""
    frames = []
    for events, _, chunk in iter_event_chunks(CONFIG):
        frames.append(
            pd.DataFrame(
                {
                    "u": events["user_id"].to_numpy(zero_copy_only=False),
                    "ts": events["ts"].cast(pa.int64()).to_numpy(),
                    "s": chunk.session,
                }
            )
        )
    df = pd.concat(frames).sort_values(["u", "ts"], kind="stable")
    n_true = df.s.nunique()

    def found(gap_minutes: int) -> tuple[float, float]:
        sid = (df.u.ne(df.u.shift()) | (df.ts.diff() > gap_minutes * 60_000)).cumsum()
        purity = (df.groupby(sid).s.nunique() == 1).mean()
        return sid.nunique() / n_true, purity

    ratio20, purity20 = found(20)
    ratio30, purity30 = found(30)
    assert abs(ratio20 - 1) < 0.01 and purity20 > 0.99
    assert 0.9 < ratio30 < 0.985 and purity30 < 0.99


def test_daily_seasonality(ev: pd.DataFrame) -> None:
    hours = ev[ev.event_type == "search"].ts.dt.hour.value_counts(normalize=True)
    hours = hours.reindex(range(24), fill_value=0.0)
    assert hours.loc[[19, 20, 21, 22]].sum() > 2 * hours.loc[[3, 4, 5, 6]].sum() + 0.1
    days = (ev.ts.max() - ev.ts.min()).days
    assert CONFIG.days - 2 <= days <= CONFIG.days + 3


def test_queries_bilingual_heavy_headed_with_typos(ev: pd.DataFrame) -> None:
    q = ev[ev.event_type == "search"]["query"]
    assert q.map(lambda s: bool(CJK.search(s))).mean() > 0.1
    assert q.str.contains(r"^[a-z]", regex=True).mean() > 0.4
    freq = q.value_counts()
    assert freq.iloc[0] > 20 * freq.median()  # a head of frequent queries...
    assert (freq == 1).sum() > 0.3 * len(freq)  # ...and a long tail
    assert (q == q.str.strip()).all() and not q.str.contains("  ").any()


def test_typo_rate_controls_misspellings() -> None:
    def unknown_share(rate: float) -> float:
        tb = generate_tables(MarketplaceConfig(n_events=15_000, seed=4, typo_rate=rate))
        ev = tb["events"].to_pandas()
        items = tb["items"].to_pandas()
        vocab = set(" ".join(items.title.str.lower()).split()) | set(items.market)
        vocab |= {w.lower() for w in BRAND_HEADS + BRAND_TAILS} | {m[1] for m in MARKETS}
        vocab |= {w for pair in ADJECTIVES + tuple(PRICE_WORDS.values()) for w in pair}
        vocab |= {c[0] for c in CATEGORIES} | {c[1] for c in CATEGORIES}
        q = ev[ev.event_type == "search"]["query"]
        return q.map(lambda s: any(t not in vocab for t in s.split())).mean()

    assert unknown_share(0.0) == 0.0
    assert 0.1 < unknown_share(0.2) < 0.3


# --- determinism and streaming --------------------------------------------------------------


def test_same_seed_identical_other_seed_different(tables: dict[str, pa.Table]) -> None:
    again = generate_tables(CONFIG)
    for name in tables:
        assert again[name].equals(tables[name]), name
    other = generate_tables(MarketplaceConfig(n_events=CONFIG.n_events, seed=CONFIG.seed + 1))
    assert not other["events"].equals(tables["events"])
    assert not other["items"].equals(tables["items"])


def test_streaming_parquet_equals_in_memory(tmp_path, tables: dict[str, pa.Table]) -> None:
    seen: list[int] = []
    cfg = CONFIG
    summary = generate(cfg, tmp_path / "out", progress=seen.append)
    out = tmp_path / "out"
    assert pq.read_table(out / "items.parquet").equals(tables["items"])
    assert pq.read_table(out / "users.parquet").equals(tables["users"])
    parts = sorted((out / "events").glob("part-*.parquet"))
    assert len(parts) >= 2  # really chunked
    events = pa.concat_tables(pq.read_table(p) for p in parts)
    truth = pa.concat_tables(pq.read_table(p) for p in sorted((out / "truth").glob("*.parquet")))
    assert events.equals(tables["events"]) and truth.equals(tables["truth"])
    assert seen == sorted(seen) and seen[-1] == events.num_rows
    assert isinstance(summary, GenerationSummary)
    assert summary.counts["events"] == events.num_rows
    assert summary.counts["click"] == int(
        pa.compute.sum(pa.compute.equal(events["event_type"], "click")).as_py()
    )
    ref = summarize(cfg, tables)
    assert summary.bayes_auc == pytest.approx(ref.bayes_auc)
    assert summary.bayes_logloss == pytest.approx(ref.bayes_logloss)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["config"]["seed"] == CONFIG.seed and saved["counts"] == summary.counts


def test_parquet_output_is_byte_identical_across_runs(tmp_path) -> None:
    cfg = MarketplaceConfig(n_events=5_000, seed=8, chunk_sessions=64)
    a, b = generate(cfg, tmp_path / "a"), generate(cfg, tmp_path / "b")
    assert a.counts == b.counts
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.parquet"))
    assert len(files) > 4
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_tiny_runs_still_emit_one_whole_session(tmp_path) -> None:
    tb = generate_tables(MarketplaceConfig(n_events=1, seed=0))
    types = tb["events"]["event_type"].to_pylist()
    assert types.count("search") >= 1 and "impression" in types
    summary = generate(MarketplaceConfig(n_events=1, seed=0), tmp_path)
    assert summary.counts["events"] == tb["events"].num_rows
    json.loads((tmp_path / "summary.json").read_text())  # strict JSON, no NaN


def test_chunks_are_bounded() -> None:
    cfg = MarketplaceConfig(n_events=200_000, seed=1, chunk_sessions=512)
    sizes = [ev.num_rows for ev, _, _ in iter_event_chunks(cfg)]
    assert sum(sizes) <= cfg.n_events and sum(sizes) > 0.97 * cfg.n_events
    assert max(sizes) < 512 * 120  # a chunk holds about chunk_sessions sessions


@pytest.mark.slow
def test_one_million_events_fast_and_memory_bounded(tmp_path) -> None:
    import time

    import psutil

    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = before

    def track(_: int) -> None:
        nonlocal peak
        peak = max(peak, proc.memory_info().rss)

    t0 = time.perf_counter()
    summary = generate(MarketplaceConfig(n_events=1_000_000, seed=0), tmp_path, progress=track)
    elapsed = time.perf_counter() - t0
    assert summary.counts["events"] > 970_000
    assert elapsed < 120  # 2 shared cores; measured ~8 s alone
    assert peak - before < 600 * 2**20


# --- helpers and validation -----------------------------------------------------------------


def test_bayes_metrics_by_hand() -> None:
    p = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0, 0, 1, 1])
    auc, ll = bayes_metrics(p, y)
    assert auc == pytest.approx(0.75)  # 3 of 4 (positive, negative) pairs ordered right
    want = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert ll == pytest.approx(want)
    assert bayes_metrics(np.array([0.5, 0.5]), np.array([False, True]))[0] == 0.5  # a tie is half
    assert bayes_metrics(np.array([0.2, 0.2, 0.9]), np.array([0, 1, 1]))[0] == pytest.approx(0.75)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]), st.booleans()),
        min_size=2,
        max_size=40,
    ).filter(lambda xs: 0 < sum(y for _, y in xs) < len(xs))
)
def test_bayes_auc_equals_pair_count(xs: list[tuple[float, bool]]) -> None:
    p = np.array([a for a, _ in xs])
    y = np.array([b for _, b in xs])
    pos, neg = p[y], p[~y]
    want = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (
        len(pos) * len(neg)
    )
    assert bayes_metrics(p, y)[0] == pytest.approx(want)


def test_bayes_metrics_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="need both classes, got 0 positives"):
        bayes_metrics(np.array([0.1, 0.2]), np.array([0, 0]))
    with pytest.raises(ValueError, match="equal length"):
        bayes_metrics(np.array([0.1, 0.2]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="probabilities in"):
        bayes_metrics(np.array([0.1, 1.5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="only 0/1"):
        bayes_metrics(np.array([0.1, 0.5]), np.array([0, 2]))


def test_price_band_edges_and_errors() -> None:
    got = price_band(np.array([10.0, 69.99, 70.0, 139.0, 140.0, 279.0, 280.0, 5000.0]))
    assert got.tolist() == ["low", "low", "mid", "mid", "high", "high", "lux", "lux"]
    assert price_band([5.0, 50.0], edges=[20.0], labels=["a", "b"]).tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="'labels' must have len"):
        price_band([1.0], edges=[1.0, 2.0], labels=["a", "b"])
    with pytest.raises(ValueError, match="strictly increasing"):
        price_band([1.0], edges=[2.0, 1.0], labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        price_band([float("nan")])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_events": 0}, "'n_events' parameter must be a positive int. Got 0"),
        ({"n_categories": 99}, "'n_categories' parameter must be an int in \\[1, 24\\]"),
        ({"typo_rate": 1.5}, "'typo_rate' parameter must be a float in \\[0, 1\\]. Got 1.5"),
        ({"start": "yesterday"}, "'start' parameter must be an ISO date"),
        ({"n_items": 3}, "'n_items' parameter must be None or an int >= 10. Got 3"),
    ],
)
def test_config_validation_names_parameter(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MarketplaceConfig(**kwargs)


def test_config_round_trips_through_mapping() -> None:
    cfg = MarketplaceConfig(n_events=1234, seed=7, n_items=None, typo_rate=0.1)
    assert from_mapping(MarketplaceConfig, to_mapping(cfg)) == cfg
    assert json.loads(json.dumps(to_mapping(cfg))) == to_mapping(cfg)
    with pytest.raises(ConfigError, match="unknown key\\(s\\) n_event;"):
        from_mapping(MarketplaceConfig, {"n_event": 5})
    assert cfg.items == 300 and cfg.users == 100  # small runs keep a usable catalogue
    big = MarketplaceConfig(n_events=10_000_000)
    assert (big.items, big.users) == (100_000, 50_000)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=9),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 2**32 - 1),
)
def test_add_typo_is_one_edit(tokens: list[str], seed: int) -> None:
    query = " ".join(tokens)
    out = add_typo(query, np.random.default_rng(seed))
    assert out != query and "  " not in out
    if any(len(t) >= 4 for t in tokens):
        assert osa_distance(query, out) == 1


@given(st.text(alphabet="上海巴黎公寓别墅酒店", min_size=1, max_size=5), st.integers(0, 1000))
def test_add_typo_on_chinese_changes_query(token: str, seed: int) -> None:
    out = add_typo(token, np.random.default_rng(seed))
    assert out != token


def test_generate_rejects_wrong_config_type(tmp_path) -> None:
    with pytest.raises(TypeError, match="expected a MarketplaceConfig"):
        generate_tables({"n_events": 10})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a MarketplaceConfig"):
        generate({"n_events": 10}, tmp_path)  # type: ignore[arg-type]


def test_latent_state_is_deterministic_and_unit_norm() -> None:
    a, b = latent_state(CONFIG), latent_state(CONFIG)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert np.allclose(np.linalg.norm(a["item_vectors"], axis=1), 1.0, atol=1e-5)
    assert a["item_vectors"].shape == (CONFIG.items, CONFIG.latent_dim)
    assert a["user_taste"].shape == (CONFIG.users, CONFIG.n_categories)
    assert np.allclose(a["user_taste"].sum(axis=1), 1.0)


def test_small_and_odd_configs_still_valid() -> None:
    cfg = MarketplaceConfig(n_events=3_000, seed=9, n_markets=60, n_categories=3, n_brands=400)
    tb = generate_tables(cfg)
    for name, table in tb.items():
        assert table.schema.equals(SCHEMAS[name])
    markets = set(tb["items"]["market"].to_pylist())
    assert len(markets) == 60 and any(m.endswith("2") for m in markets)
    assert len(set(tb["items"]["brand"].to_pylist())) > 10
    assert 2_500 < tb["events"].num_rows <= 3_000


def test_generate_items_sets_the_density_and_reports_clicks_per_item(tmp_path) -> None:
    """``funnel generate --items N`` (issue 18): the catalog has N items and the summary says
    how many clicks each gets, the density embeddings and id fields learn from."""
    import json

    from typer.testing import CliRunner

    from funnel.cli import app

    runs = {}
    for items in (None, 100):
        out = tmp_path / f"out-{items}"
        args = ["generate", "--events", "6000", "--seed", "4", "--out", str(out), "--json"]
        res = CliRunner().invoke(app, args + ([] if items is None else ["--items", str(items)]))
        assert res.exit_code == 0, res.output
        runs[items] = json.loads(res.output)
        record = json.loads((out / "summary.json").read_text())
        assert record["config"]["n_items"] == items
        assert record["clicks_per_item"] == pytest.approx(
            record["counts"]["click"] / record["n_items"])
    assert runs[100]["items"] == 100 and runs[None]["items"] == 300  # clip(6000 // 100, 300)
    dense, default = runs[100]["clicks_per_item"], runs[None]["clicks_per_item"]
    assert dense == pytest.approx(3 * default, rel=0.25)  # same events on a third of the items
    res = CliRunner().invoke(app, ["generate", "--events", "6000", "--items", "5",
                                   "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "--items" in res.output
