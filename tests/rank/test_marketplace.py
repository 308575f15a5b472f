"""On the synthetic marketplace (true click probabilities known): gap to Bayes, build, serve."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from funnel.data.store import EventStore, memory_store
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.features.personalization import FEATURE_NAMES, TASTE_FEATURES, RecentActions, observe
from funnel.features.training_set import TrainingSetConfig, build_training_set
from funnel.rank import get_ranker
from funnel.rank.build import RankConfig, build_rank, item_vectors, ranking_data, time_split
from funnel.rank.defaults import DEFAULT_FEATURES
from funnel.rank.metrics import auc, logloss
from funnel.rank.serving import load_serving_ranker
from funnel.workspace import Workspace

CONFIG = MarketplaceConfig(n_events=40_000, seed=11)


@pytest.fixture(scope="module")
def tables() -> dict:
    return generate_tables(CONFIG)


@pytest.fixture(scope="module")
def training(tables):
    con = memory_store({name: tables[name] for name in ("events", "items", "truth")})
    table = build_training_set(con, TrainingSetConfig(), item_vectors(con, None))
    truth = dict(con.sql("SELECT event_id, p_click FROM truth").fetchall())
    return table, truth


@pytest.mark.slow
def test_gap_to_bayes_logloss_is_bounded(training) -> None:
    """DeepFM and GBDT land within 0.06 nats of the Bayes-optimal logloss on the most recent
    20% of impressions, and well below the constant-CTR baseline."""
    table, truth = training
    tr, va, te = time_split(table.num_rows, 0.1, 0.2)
    train, valid, test = (ranking_data(table, s, "click") for s in (tr, va, te))
    p_true = np.array([truth[e] for e in table.column("event_id").to_pylist()[te]])
    bayes = logloss(test.label, p_true)
    constant = logloss(test.label, np.full(len(test), train.label.mean()))
    for name in ("deepfm", "gbdt"):
        kw = {"epochs": 6, "learning_rate": 0.003} if name == "deepfm" else {}
        model = get_ranker(name)(DEFAULT_FEATURES, **kw).fit(train, valid)
        ll = logloss(test.label, model.predict_proba(test.columns))
        assert ll - bayes < 0.06, (name, ll, bayes)
        assert ll < constant - 0.015, (name, ll, constant)


def _workspace(tmp_path, tables) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    with EventStore.open(ws.store_path) as store:
        for kind in ("items", "users", "events", "truth"):
            store.insert(kind, tables[kind])
    return ws


@pytest.mark.slow
def test_build_rank_writes_a_servable_component(tmp_path, tables) -> None:
    ws = _workspace(tmp_path, tables)
    config = RankConfig(models=("lr", "deepfm"), serve_model="deepfm", epochs=2,
                        train_cvr=True)
    with ws.artifacts.begin() as build:
        metrics = build_rank(ws, build, config)
        version = build.commit()
    rank = version / "rank"
    assert {"metrics.json", "serving.json", "items.parquet", "reliability.png"} <= {
        p.name for p in rank.iterdir()}
    assert not list(rank.rglob("*.pkl"))
    assert metrics["bayes.logloss"] < metrics["deepfm.logloss"] < metrics["bayes.logloss"] + 0.1
    assert metrics["deepfm.gap_auc"] > 0
    assert json.loads((rank / "metrics.json").read_text())["metrics"] == pytest.approx(metrics)
    serving = load_serving_ranker(version)
    items = tables["items"].column("item_id").to_pylist()[:500]
    state = RecentActions(clicks=tuple(items[:3]))
    p, cols = serving.score(items, query="london studio", market=None, state=state)
    assert p.shape == (len(items),) and np.all((p >= 0) & (p <= 1))
    assert cols["emb_click_sim"].max() > 0.5  # a recently clicked candidate is similar to itself
    _, with_cvr = serving.score(items, query="london studio", market=None, state=state,
                                with_cvr=True)
    assert with_cvr["p_cvr"].shape == (len(items),) and 0 < with_cvr["p_cvr"].mean() < 1
    again = serving.score(items[:5], query="london studio", market=None, state=state)[0]
    assert again == pytest.approx(p[:5])
    assert serving.score([], query="", market=None, state=state)[0].shape == (0,)
    # item-side fields pre-encoded at load give exactly the full transform's numbers
    assert serving.item_parts is not None and "item_id" in serving.item_parts
    np.testing.assert_allclose(serving._predict(items, cols), serving.ranker.predict_proba(cols),
                               rtol=1e-6)
    unknown = serving.score(["nope", items[0]], query="london studio", market="paris",
                            state=state)[0]
    assert unknown.shape == (2,) and unknown[1] == pytest.approx(p[0])


def test_rank_config_rejects_typos() -> None:
    from funnel.config import from_mapping
    from funnel.exceptions import ConfigError

    with pytest.raises(ConfigError, match="unknown key"):
        from_mapping(RankConfig, {"modles": ["lr"]})
    with pytest.raises(ConfigError, match="unknown \\['xgboost'\\]"):
        RankConfig(models=("xgboost",))
    with pytest.raises(ConfigError, match="serve_model 'fm' must be one of"):
        RankConfig(models=("lr",), serve_model="fm")


@pytest.mark.slow
def test_type_feature_is_live_and_the_same_offline_and_online(tmp_path, tables) -> None:
    """emb_type_sim: trained types travel with the artifact; a training row (replayed) and the
    server (state folded by ``apply_events``) compute the same value for the same history."""
    from funnel.embed.types import NEW_USER
    from funnel.serve.state import apply_events

    ws = _workspace(tmp_path, tables)
    config = RankConfig(models=("lr",), serve_model="lr", epochs=1, train_cvr=False)
    with ws.artifacts.begin() as build:
        build_rank(ws, build, config)
        version = build.commit()
    assert (version / "rank" / "type_meta.json").exists()
    serving = load_serving_ranker(version)
    assert serving.vectors is not None and serving.vectors.types is not None
    con = ws.connect(read_only=True)
    try:
        table = build_training_set(con, TrainingSetConfig(recent_k=config.recent_k),
                                   serving.vectors).to_pydict()
        booked = [u for (u,) in con.sql(
            "SELECT user_id FROM events WHERE event_type = 'booking' GROUP BY 1 "
            "HAVING count(*) >= 2 ORDER BY 1 LIMIT 6").fetchall()]
        events = con.sql(
            "SELECT user_id, epoch_ms(ts) AS ts_ms, event_type, item_id, request_id, position, "
            "dwell_ms, event_id FROM events WHERE item_id IS NOT NULL AND event_type IN "
            "('impression', 'click', 'booking') AND user_id IN ? ORDER BY user_id, ts, "
            "event_type != 'impression', event_id", params=[booked]).to_arrow_table().to_pylist()
    finally:
        con.close()
    sims = np.array(table["emb_type_sim"])
    new_user = serving.vectors.types.similarities(NEW_USER, table["item_id"])
    assert (sims != 0).mean() > 0.5  # the feature is not the old constant 0
    assert (np.abs(sims - new_user) > 1e-6).sum() > 100  # bookings change the user's type
    row = {e: k for k, e in enumerate(table["event_id"])}
    nonzero = dict.fromkeys(FEATURE_NAMES, 0)
    state: dict[str, RecentActions] = {}
    checked = changed = 0
    k = 0
    while k < len(events):  # one (user, ts) group at a time: impressions see only the past
        user, ts_ms = events[k]["user_id"], events[k]["ts_ms"]
        group = [e for e in events[k:] if e["user_id"] == user and e["ts_ms"] == ts_ms]
        k += len(group)
        now = state.get(user, RecentActions(max_len=50))  # the server keeps more than recent_k
        for e in group:
            if e["event_type"] == "impression" and e["event_id"] in row:
                online = serving.columns([e["item_id"]], query="", market=None, state=now,
                                         now_ms=ts_ms)
                offline = sims[row[e["event_id"]]]
                assert online["emb_type_sim"][0] == pytest.approx(offline, abs=1e-6)
                # every session feature: the KDD'18 six (long clicks seen as of the request's
                # time, skips derived from the server's 50-action state) and the taste ones
                for name in FEATURE_NAMES:
                    want = table[name][row[e["event_id"]]]
                    assert online[name][0] == pytest.approx(want, abs=1e-5), name
                    nonzero[name] += online[name][0] != 0
                checked += 1
                changed += bool(now.bookings)
        state[user] = apply_events(now, group)
    assert checked > 50 and changed > 10
    for name in (*TASTE_FEATURES, "emb_skip_sim", "emb_long_click_sim"):  # live on these users
        assert nonzero[name] > 5, name
    # the request's time reaches the long-click rule at serving: a 90 s click counts only once
    # its dwell passed 60 s, as in a training row (the generated users never straddle it)
    item = serving.vectors.ids[0]
    long_click = observe(RecentActions(max_len=50), "click", item, ts_ms=0, dwell_ms=90_000)
    sims_at = [serving.columns([item], query="", market=None, state=long_click, now_ms=t)[
        "emb_long_click_sim"][0] for t in (59_999, 60_001)]
    assert sims_at == [0.0, pytest.approx(1.0, abs=1e-5)]


# Measured on this 40k-event size (seeds 11, 1, 2), test split = the most recent 20%:
#   LR (build defaults)    AUC .7441 .7488 .7577   logloss .2301 .2478 .2447
#   LR (tuned: lr 0.01)    AUC .7708 .7695 .7743   logloss .2167 .2343 .2326
#   FM (build defaults)    AUC .7802 .7711 .7691   logloss .2150 .2348 .2342
#   DeepFM (build defaults) AUC .7820 .7818 .7786  logloss .2123 .2318 .2303
#   Bayes logloss .1899 .2028 .2057 -> DeepFM gap .0224 .0290 .0246
# Smallest wins: DeepFM over tuned LR +.0043 AUC / -.0023 logloss; FM over default LR
# +.0114 / -.0105. FM vs a *tuned* LR is a tie (one seed better, one worse): not asserted.
DEEPFM_VS_TUNED_LR = (0.002, 0.001)  # (AUC margin, logloss margin)
FM_VS_LR = (0.005, 0.004)
BAYES_GAP = 0.035


@pytest.mark.slow
def test_fm_and_deepfm_beat_lr_on_the_marketplace(training) -> None:
    """With the build's defaults (recent-click history fields, weight decay, numeric fields
    kept out of the FM pairs), DeepFM beats an LR tuned on its own (higher learning rate) and
    FM beats LR trained with the same settings, on the most recent 20% of impressions; DeepFM
    lands within ``BAYES_GAP`` nats of the Bayes-optimal logloss."""
    from funnel.rank.build import make_ranker

    torch.set_num_threads(1)
    table, truth = training
    tr, va, te = time_split(table.num_rows, 0.1, 0.2)
    train, valid, test = (ranking_data(table, s, "click") for s in (tr, va, te))
    p_true = np.array([truth[e] for e in table.column("event_id").to_pylist()[te]])
    bayes = logloss(test.label, p_true)
    config = RankConfig()
    tuned = RankConfig(learning_rate=0.01)
    got = {}
    for key, name, cfg in (("lr", "lr", config), ("lr_tuned", "lr", tuned),
                           ("fm", "fm", config), ("deepfm", "deepfm", config)):
        model = make_ranker(name, cfg, DEFAULT_FEATURES).fit(train, valid)
        p = model.predict_proba(test.columns)
        got[key] = (auc(test.label, p), logloss(test.label, p))
    assert got["deepfm"][0] > got["lr_tuned"][0] + DEEPFM_VS_TUNED_LR[0], got
    assert got["deepfm"][1] < got["lr_tuned"][1] - DEEPFM_VS_TUNED_LR[1], got
    assert got["fm"][0] > got["lr"][0] + FM_VS_LR[0], got
    assert got["fm"][1] < got["lr"][1] - FM_VS_LR[1], got
    assert got["deepfm"][1] - bayes < BAYES_GAP, (got, bayes)


# Fixed 3 epochs, no validation (no early stopping), lr 0.003, 40k events, seeds 11 / 1 / 2:
#   DeepFM weight_decay 0     AUC .7454 .7490 .7512   logloss .2300 .2409 .2404
#   DeepFM weight_decay 1e-3  AUC .7808 .7755 .7783   logloss .2127 .2323 .2306
# Smallest gain +.0265 AUC (seed 1) / -.0086 logloss (seed 1): asserted with about half.
DECAY_GAIN = (0.015, 0.004)  # (AUC margin, logloss margin)


def test_estimator_and_build_share_the_weight_decay_default() -> None:
    """``get_ranker(name)(...)`` and ``funnel train`` regularize the same way by default."""
    assert get_ranker("deepfm")(DEFAULT_FEATURES).weight_decay == RankConfig().weight_decay == 1e-3


@pytest.mark.slow
def test_weight_decay_keeps_deepfm_from_overfitting_at_fixed_epochs(training) -> None:
    """The estimator's default decay (coupled L2 on every weight, embedding rows included) is
    what closed the gap to DeepCTR-Torch at fixed epochs: without it DeepFM overfits the id and
    cross rows within three epochs (benchmarks/RESULTS.md, ranking)."""
    torch.set_num_threads(1)
    table, _ = training
    tr, _, te = time_split(table.num_rows, 0.1, 0.2)
    train, test = ranking_data(table, tr, "click"), ranking_data(table, te, "click")
    got = {}
    for wd in (0.0, 1e-3):
        model = get_ranker("deepfm")(DEFAULT_FEATURES, epochs=3, learning_rate=0.003,
                                     weight_decay=wd).fit(train)
        p = model.predict_proba(test.columns)
        got[wd] = (auc(test.label, p), logloss(test.label, p))
    assert got[1e-3][0] > got[0.0][0] + DECAY_GAIN[0], got
    assert got[1e-3][1] < got[0.0][1] - DECAY_GAIN[1], got
