"""Ranking benchmark: our LR/FM/DeepFM/DCNv2 and LightGBM vs DeepCTR-Torch's FM and DeepFM.

Same data, same split, same embedding size, batch size, epochs and learning rate, in one run;
each side with its own default L2 (ours: ``[rank] weight_decay``; DeepCTR-Torch: 1e-5 on its
embedding and linear tables); DeepCTR's DeepFM once more with our L2 (same objective), and the
DeepFM pair with no L2 at all. Training speed: ours (with its L2) vs DeepCTR without L2.
Reports training rows/s, inference rows/s (batches of 4096, and single 500-candidate requests),
AUC and logloss. On the synthetic marketplace also the Bayes-optimal logloss/AUC (the generator
knows the true click probabilities). ``--criteo FILE`` runs the same models on a Criteo TSV
(random 80/10/10 split, fixed seed); ``--criteo`` alone reads ../shared/data/criteo-sample-8k.
Also (issue 25): our random forest beside GBDT with its out-of-bag AUC, scikit-learn's forest
on the same fields for fit time, and ``--select`` on the GBDT (``selected_features`` ...
``score_500_ms_after_selection``: model scoring of 500 raw-column rows, encoding included).

    python benchmarks/ranking.py --quick --json out.json
    python benchmarks/ranking.py --criteo ../shared/data/criteo-sample-8k/train.csv
    python benchmarks/ranking.py --quick --criteo --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from funnel.features.specs import Encoded, FeatureSet  # noqa: E402
from funnel.features.training_set import TrainingSetConfig, build_training_set  # noqa: E402
from funnel.rank import RankingData, get_ranker  # noqa: E402
from funnel.rank.build import RankConfig, ranking_data, time_split  # noqa: E402
from funnel.rank.defaults import DEFAULT_FEATURES  # noqa: E402
from funnel.rank.metrics import auc, logloss  # noqa: E402

CRITEO = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "criteo-sample-8k"
"""The Criteo sample, read where the team keeps it (never copied into the repository)."""
Split = tuple[RankingData, RankingData, RankingData, np.ndarray | None, list[dict[str, Any]]]
SERVING: dict[str, Any] = {}
"""What the marketplace run needs to build an in-process ServingRanker (item snapshot, vectors)."""


# ---- data ----------------------------------------------------------------------------------
def marketplace(n_events: int, seed: int) -> Split:
    from funnel.data.store import memory_store
    from funnel.data.synthetic import MarketplaceConfig, generate_tables

    tables = generate_tables(MarketplaceConfig(n_events=n_events, seed=seed))
    con = memory_store({name: tables[name] for name in ("events", "items", "truth")})
    from funnel.rank.build import item_snapshot, item_vectors

    lookup = item_vectors(con, None, seed=seed)  # what `funnel train` uses without embeddings
    table = build_training_set(con, TrainingSetConfig(), lookup)

    SERVING.update(snapshot=item_snapshot(con, float(np.asarray(table.column("click")).mean())),
                   vectors=lookup)
    truth = dict(con.sql("SELECT event_id, p_click FROM truth").fetchall())
    tr, va, te = time_split(table.num_rows, 0.1, 0.2)
    p_true = np.array([truth[e] for e in table.column("event_id").to_pylist()[te]])
    # DeepCTR gets one id per field, so multi-token fields are left out for both sides.
    specs = [f for f in DEFAULT_FEATURES if f["type"] not in ("sequence", "history")]
    train, valid, test = (ranking_data(table, s, "click") for s in (tr, va, te))
    return train, valid, test, p_true, specs


def criteo(path: Path, seed: int) -> Split:
    from funnel.data.loaders import read_criteo

    files = sorted(path.glob("*.csv")) + sorted(path.glob("*.txt")) if path.is_dir() else [path]
    frames = [read_criteo(f) for f in files]
    y = np.concatenate([f.labels for f in frames]).astype(np.float32)
    dense = np.concatenate([f.dense for f in frames])
    cat = np.concatenate([f.categorical for f in frames])
    cols: dict[str, np.ndarray] = {f"I{j + 1}": dense[:, j].astype(np.float64) for j in range(13)}
    cols |= {f"C{j + 1}": cat[:, j] for j in range(26)}
    specs = [{"type": "numeric", "name": f"I{j + 1}", "log1p": True} for j in range(13)]
    specs += [{"type": "vocab", "name": f"C{j + 1}", "min_count": 2} for j in range(26)]
    data = RankingData(cols, y)
    order = np.random.default_rng(seed).permutation(len(y))
    a, b = int(0.8 * len(y)), int(0.9 * len(y))
    return data.take(order[:a]), data.take(order[a:b]), data.take(order[b:]), None, specs


# ---- DeepCTR-Torch on the very same encoded fields --------------------------------------------
def deepctr_inputs(fs: FeatureSet, enc: Encoded) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Each one-slot field as a DeepCTR SparseFeat (local id) or DenseFeat (our scaled value)."""
    from deepctr_torch.inputs import DenseFeat, SparseFeat

    columns, x = [], {}
    slot = 0
    for spec, size, off in zip(fs.specs, fs.field_sizes, fs.offsets, strict=True):
        name = spec.name
        if spec.type == "numeric":
            columns.append(DenseFeat(name, 1))
            x[name] = enc.val[:, slot].astype(np.float32)
        else:
            columns.append(SparseFeat(name, vocabulary_size=int(size), embedding_dim=EMB))
            x[name] = (enc.idx[:, slot] - off).astype(np.int64)
        slot += spec.width
    return columns, x


def take(x: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: v[:n] for k, v in x.items()}


EMB, HIDDEN, BATCH, LR = 8, (128, 64), 1024, 3e-3
WD = RankConfig().weight_decay
"""Ours: the L2 `funnel train` uses ([rank] weight_decay, Adam's coupled decay on every weight,
embeddings included). The peer: DeepCTR-Torch's own default L2 (1e-5 on the embedding and
linear tables). Both are also run with no L2 at all (``*_no_l2`` keys), as in the first
versions of this benchmark."""
PEER_L2 = 1e-5
PEER_L2_MATCHED = WD * BATCH / 2
"""DeepCTR sums the batch's loss and adds ``l2 * sum(w^2)``; our mean loss plus Adam's coupled
decay ``wd * w`` is the same objective when ``l2 = wd * batch / 2`` (on every weight, its DNN
included): the ``*_matched_l2`` keys."""


def run(
    split: Split, epochs: int, seed: int, label: str, repeats: int = 3
) -> dict[str, float]:
    train, valid, test, p_true, specs = split
    out: dict[str, float] = {}
    if p_true is not None:
        out["logloss_bayes"] = logloss(test.label, p_true)
        out["auc_bayes"] = auc(test.label, p_true)
    print(f"\n== {label}: train {len(train):,} / valid {len(valid):,} / test {len(test):,} rows, "
          f"CTR {train.label.mean():.4f}; emb {EMB}, hidden {HIDDEN}, batch {BATCH}, "
          f"epochs {epochs}, lr {LR}")
    fs_for_peer = None
    ours: dict[str, Any] = {}
    for name in ("lr", "fm", "deepfm", "dcnv2"):
        model = get_ranker(name)(specs, embedding_dim=EMB, hidden_units=HIDDEN, batch_size=BATCH,
                                 epochs=epochs, learning_rate=LR, weight_decay=WD, seed=seed)
        t0 = time.perf_counter()
        model.fit(train)  # fixed epochs, no early stopping: same work as the peer
        secs = time.perf_counter() - t0
        p = model.predict_proba(test.columns)
        # the training loop on encoded input, as the peer gets it; and the whole fit()
        out[f"train_rows_per_sec_{name}_ours"] = len(train) * epochs / model.fit_seconds_["train"]
        out[f"train_cpu_rows_per_sec_{name}_ours"] = (
            len(train) * epochs / model.fit_seconds_["train_cpu"])
        out[f"train_rows_per_sec_{name}_ours_incl_features"] = len(train) * epochs / secs
        out[f"auc_{name}_ours"], out[f"logloss_{name}_ours"] = auc(test.label, p), logloss(
            test.label, p)
        ours[name] = model
        fs_for_peer = model.features_
    assert fs_for_peer is not None
    # inference, ours: model on encoded batches of 4096, and end-to-end 500-candidate requests
    deepfm = ours["deepfm"]
    enc_test = deepfm.features_.transform(test.columns)
    t0 = time.perf_counter()
    for s in range(0, len(test), 4096):
        deepfm.predict_encoded(enc_test.take(np.arange(s, min(s + 4096, len(test)))))
    out["infer_rows_per_sec_deepfm_ours"] = len(test) / (time.perf_counter() - t0)
    req = test.take(np.arange(min(500, len(test))))
    times, model_times, cpu_times = [], [], []
    enc_req = deepfm.features_.transform(req.columns)
    for _ in range(60):
        t0, c0 = time.perf_counter(), time.process_time()
        deepfm.predict_proba(req.columns)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        t0 = time.perf_counter()
        deepfm.predict_encoded(enc_req)
        model_times.append(time.perf_counter() - t0)
    out["score_500_ms_deepfm"] = 1000 * float(np.median(times[10:]))
    out["score_500_ms_deepfm_raw_columns"] = out.pop("score_500_ms_deepfm")
    out["score_500_ms_deepfm_model_only"] = 1000 * float(np.median(model_times[10:]))
    if SERVING and label.startswith("synthetic"):
        out["score_500_ms_deepfm"] = serving_latency(deepfm, valid, req)
    # CPU time of this process: what the request costs when the cores are not oversubscribed
    out["score_500_cpu_ms_deepfm"] = 1000 * float(np.median(cpu_times[10:]))
    # LightGBM (through our GBDTRanker: the same fields, LightGBM's own trees)
    gbdt = get_ranker("gbdt")(specs, seed=seed)
    t0 = time.perf_counter()
    gbdt.fit(train, valid)
    out["train_seconds_lightgbm"] = time.perf_counter() - t0
    p = gbdt.predict_proba(test.columns)
    out["auc_lightgbm"], out["logloss_lightgbm"] = auc(test.label, p), logloss(test.label, p)
    out |= forest_and_selection(gbdt, train, valid, test, specs, seed)
    # DeepCTR-Torch FM (DeepFM without the DNN) and DeepFM
    from deepctr_torch.models import DeepFM

    feats, x_train = deepctr_inputs(fs_for_peer, fs_for_peer.transform(train.columns))
    _, x_test = deepctr_inputs(fs_for_peer, enc_test)
    def fit_peer(
        hidden: tuple[int, ...], l2: float = PEER_L2, l2_dnn: float = 0.0
    ) -> tuple[Any, float, float]:
        torch.manual_seed(seed)
        peer = DeepFM(feats, feats, task="binary", dnn_hidden_units=hidden, l2_reg_embedding=l2,
                      l2_reg_linear=l2, l2_reg_dnn=l2_dnn, dnn_dropout=0.0, seed=seed,
                      device="cpu")
        peer.compile(torch.optim.Adam(peer.parameters(), lr=LR), "binary_crossentropy",
                     metrics=[])
        t0, c0 = time.perf_counter(), time.process_time()
        peer.fit(x_train, train.label, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=True)
        return peer, time.perf_counter() - t0, time.process_time() - c0

    for name, hidden in (("fm", ()), ("deepfm", HIDDEN)):
        peer, secs, cpu = fit_peer(hidden)
        p = peer.predict(x_test, batch_size=4096).ravel().astype(np.float64)
        out[f"train_rows_per_sec_{name}_deepctr"] = len(train) * epochs / secs
        out[f"train_cpu_rows_per_sec_{name}_deepctr"] = len(train) * epochs / cpu
        out[f"auc_{name}_deepctr"], out[f"logloss_{name}_deepctr"] = auc(test.label, p), logloss(
            test.label, p)
        if name == "deepfm":
            t0 = time.perf_counter()
            peer.predict(x_test, batch_size=4096)
            out["infer_rows_per_sec_deepfm_deepctr"] = len(test) / (time.perf_counter() - t0)
            x500 = take(x_test, 500)
            ts = []
            for _ in range(30):
                t0 = time.perf_counter()
                peer.predict(x500, batch_size=500)
                ts.append(time.perf_counter() - t0)
            out["score_500_ms_deepfm_deepctr_model_only"] = 1000 * float(np.median(ts[5:]))
    # DeepCTR's default L2 is a sum over its whole tables every batch, which slows it down: the
    # speed figures compare against its fastest setting, no L2 (ours keeps its weight decay).
    for key in ("train_rows_per_sec_deepfm_deepctr", "train_cpu_rows_per_sec_deepfm_deepctr"):
        out[f"{key}_default_l2"] = out.pop(key)
    peer, _, _ = fit_peer(HIDDEN, PEER_L2_MATCHED, PEER_L2_MATCHED)
    p = peer.predict(x_test, batch_size=4096).ravel().astype(np.float64)
    out["auc_deepfm_deepctr_matched_l2"] = auc(test.label, p)
    out["logloss_deepfm_deepctr_matched_l2"] = logloss(test.label, p)
    # Both DeepFMs without any L2 (the setting of the first versions of this benchmark)
    peer, secs, cpu = fit_peer(HIDDEN, 0.0)
    out["train_rows_per_sec_deepfm_deepctr"] = len(train) * epochs / secs
    out["train_cpu_rows_per_sec_deepfm_deepctr"] = len(train) * epochs / cpu
    p = peer.predict(x_test, batch_size=4096).ravel().astype(np.float64)
    out["auc_deepfm_deepctr_no_l2"] = auc(test.label, p)
    out["logloss_deepfm_deepctr_no_l2"] = logloss(test.label, p)
    bare = get_ranker("deepfm")(specs, embedding_dim=EMB, hidden_units=HIDDEN, batch_size=BATCH,
                                epochs=epochs, learning_rate=LR, weight_decay=0.0,
                                seed=seed).fit(train)
    p = bare.predict_proba(test.columns)
    out["auc_deepfm_ours_no_l2"], out["logloss_deepfm_ours_no_l2"] = auc(test.label, p), logloss(
        test.label, p)
    # The cores are shared: repeat both DeepFM fits, interleaved, and keep each side's best
    # (timeit's rule: noise only ever slows a run down). CPU-time rates are reported as well.
    rows = len(train) * epochs
    for _ in range(repeats - 1):
        again = get_ranker("deepfm")(specs, embedding_dim=EMB, hidden_units=HIDDEN,
                                     batch_size=BATCH, epochs=epochs, learning_rate=LR,
                                     weight_decay=WD, seed=seed).fit(train)
        _, secs, cpu = fit_peer(HIDDEN, 0.0)
        for key, value in (
            ("train_rows_per_sec_deepfm_ours", rows / again.fit_seconds_["train"]),
            ("train_cpu_rows_per_sec_deepfm_ours", rows / again.fit_seconds_["train_cpu"]),
            ("train_rows_per_sec_deepfm_deepctr", rows / secs),
            ("train_cpu_rows_per_sec_deepfm_deepctr", rows / cpu),
        ):
            out[key] = max(out[key], value)
    out["train_repeats_deepfm"] = float(repeats)
    out["train_speedup_deepfm_vs_deepctr"] = (
        out["train_rows_per_sec_deepfm_ours"] / out["train_rows_per_sec_deepfm_deepctr"])
    out["train_cpu_speedup_deepfm_vs_deepctr"] = (
        out["train_cpu_rows_per_sec_deepfm_ours"] / out["train_cpu_rows_per_sec_deepfm_deepctr"])
    out["auc_diff_deepfm_ours_minus_deepctr"] = out["auc_deepfm_ours"] - out["auc_deepfm_deepctr"]
    out["auc_diff_deepfm_ours_minus_deepctr_matched_l2"] = (
        out["auc_deepfm_ours"] - out["auc_deepfm_deepctr_matched_l2"])
    return out


def forest_and_selection(gbdt: Any, train: RankingData, valid: RankingData, test: RankingData,
                         specs: list[dict[str, Any]], seed: int) -> dict[str, float]:
    """Our random forest (LightGBM rf mode, seeded bags, OOB AUC) beside GBDT; scikit-learn's
    forest on the same dense fields with matched settings (the speed question of issue 25);
    then ``--select`` on the GBDT (importance on valid, AUC and 500-candidate ms on test)."""
    from sklearn.ensemble import RandomForestClassifier

    from funnel.rank.importance import select_features

    out: dict[str, float] = {}
    forest = get_ranker("rf")(specs, seed=seed)
    t0 = time.perf_counter()
    forest.fit(train)
    out["train_seconds_rf_ours"] = time.perf_counter() - t0
    out["auc_rf_ours"] = auc(test.label, forest.predict_proba(test.columns))
    out["oob_auc_rf_ours"] = forest.oob_auc_
    out["oob_minus_held_out_auc_rf_ours"] = forest.oob_auc_ - out["auc_rf_ours"]
    out["auc_gbdt_ours"] = auc(test.label, gbdt.predict_proba(test.columns))
    out["auc_rf_minus_gbdt_ours"] = out["auc_rf_ours"] - out["auc_gbdt_ours"]
    # scikit-learn: same trees (max leaves, min leaf rows, bag share, per-split feature share),
    # vocab fields as ordinal codes (its forest has no categorical splits), one core
    x, _ = forest.features_.dense(train.columns)
    x_test, _ = forest.features_.dense(test.columns)
    peer = RandomForestClassifier(
        n_estimators=forest.n_estimators, max_leaf_nodes=forest.num_leaves,
        min_samples_leaf=forest.min_child_samples, max_samples=forest.bagging_fraction,
        max_features=forest.feature_fraction * forest.feature_fraction_bynode, n_jobs=1,
        random_state=seed)
    t0 = time.perf_counter()
    peer.fit(x, train.label)
    out["train_seconds_rf_sklearn"] = time.perf_counter() - t0
    out["auc_rf_sklearn"] = auc(test.label, peer.predict_proba(x_test)[:, 1])
    out["train_speedup_rf_ours_vs_sklearn"] = (
        out["train_seconds_rf_sklearn"] / out["train_seconds_rf_ours"])
    chosen = select_features(gbdt, train, valid, test, repeats=5, seed=seed)
    out["selected_features"] = float(len(chosen.kept))
    out["dropped_features"] = float(len(chosen.dropped))
    out["auc_before_selection"] = chosen.auc_before
    out["auc_after_selection"] = chosen.auc_after
    out["score_500_ms_before_selection"] = chosen.score_500_ms_before
    out["score_500_ms_after_selection"] = chosen.score_500_ms_after
    print(f"  gbdt --select dropped: {', '.join(str(d['name']) for d in chosen.dropped)}")
    return out


def serving_latency(model: Any, valid: RankingData, req: RankingData) -> float:
    """Median wall ms of ``ServingRanker.score`` for 500 candidates: the production path (item
    fields pre-encoded at load, request + session fields and KDD'18 similarities per request,
    isotonic calibration)."""
    from funnel.features.personalization import RecentActions
    from funnel.rank.calibration import IsotonicCalibrator
    from funnel.rank.serving import ServingRanker

    snap = SERVING["snapshot"]
    item_cols = {n: snap.column(n).to_numpy(zero_copy_only=False) for n in snap.column_names}
    for n in ("price", "bid", "item_imps_before", "item_clicks_before", "item_bookings_before",
              "item_ctr_before"):
        item_cols[n] = np.asarray(item_cols[n], dtype=np.float64)
    cal = IsotonicCalibrator().fit(model.predict_proba(valid.columns), valid.label)
    serving = ServingRanker(
        ranker=model, calibrator=cal,
        item_row={i: r for r, i in enumerate(item_cols["item_id"].tolist())},
        item_cols=item_cols, vectors=SERVING["vectors"], recent_k=10, position=1,
    ).precompute()
    ids = list(dict.fromkeys(item_cols["item_id"].tolist()))[:500]
    state = RecentActions(clicks=tuple(ids[:5]), skips=tuple(ids[5:8]))
    times = []
    for _ in range(60):
        t0 = time.perf_counter()
        serving.score(ids, query="london studio", market=None, state=state, user_id="u0000001")
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times[10:]))


def show(out: dict[str, float]) -> None:
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"  {k:<{width}}  {v:,.4f}" if abs(v) < 1000 else f"  {k:<{width}}  {v:,.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k events, 2 epochs (minutes)")
    ap.add_argument("--json", type=Path, help="write the flat figures here")
    ap.add_argument("--criteo", type=Path, nargs="?", const=CRITEO,
                    help="also run on this Criteo TSV (file or folder); without a value: "
                         "../shared/data/criteo-sample-8k beside the repository")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved DeepFM fits per side; the best of each is kept")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    n_events, epochs = (100_000, 2) if args.quick else (400_000, 3)
    t0 = time.perf_counter()
    out = run(marketplace(n_events, args.seed), epochs, args.seed,
              f"synthetic marketplace ({n_events:,} events)", args.repeats)
    show(out)
    if args.criteo and not args.criteo.exists():
        print(f"\nskipping Criteo: {args.criteo} not found (the shared data folder sits "
              f"beside the repository: ../shared/data/criteo-sample-8k)")
    elif args.criteo:
        crit = run(criteo(args.criteo, args.seed), epochs, args.seed, f"Criteo {args.criteo}",
                   args.repeats)
        show(crit)
        out |= {f"criteo_{k}": v for k, v in crit.items()}
    out["seconds_total"] = time.perf_counter() - t0
    print(f"\nDeepFM training speed ours / DeepCTR-Torch: "
          f"{out['train_speedup_deepfm_vs_deepctr']:.2f}x wall, best of "
          f"{out['train_repeats_deepfm']:.0f} interleaved fits "
          f"({out['train_cpu_speedup_deepfm_vs_deepctr']:.2f}x in CPU time) (target >= 2x); "
          f"AUC diff "
          f"{out['auc_diff_deepfm_ours_minus_deepctr']:+.4f} (target >= -0.002; without L2 on "
          f"either side {out['auc_deepfm_ours_no_l2'] - out['auc_deepfm_deepctr_no_l2']:+.4f}, "
          f"DeepCTR with our L2 {out['auc_diff_deepfm_ours_minus_deepctr_matched_l2']:+.4f}); "
          f"500 candidates through the serving path {out['score_500_ms_deepfm']:.2f} ms "
          f"(target < 5 ms)")
    print(f"Random forest (LightGBM rf mode) AUC {out['auc_rf_ours']:.4f} vs GBDT "
          f"{out['auc_gbdt_ours']:.4f} (target >= -0.01), OOB AUC {out['oob_auc_rf_ours']:.4f} "
          f"(target within 0.01 of held out); fit {out['train_seconds_rf_ours']:.1f} s vs "
          f"scikit-learn {out['train_seconds_rf_sklearn']:.1f} s; GBDT --select kept "
          f"{out['selected_features']:.0f}, dropped {out['dropped_features']:.0f}: AUC "
          f"{out['auc_before_selection']:.4f} -> {out['auc_after_selection']:.4f}, 500 candidates "
          f"{out['score_500_ms_before_selection']:.2f} -> "
          f"{out['score_500_ms_after_selection']:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
