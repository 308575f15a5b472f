"""The whole funnel on a held-out period of the synthetic marketplace, vs its baselines.

Generates a marketplace (``--events``; ``--quick`` = 20k), trains every stage on the events
before the split (the last 20% held out), replays the held-out searches and bookings through
the serving Engine and reports NDCG@10 of the funnel vs popularity, no personalization and no
re-ranking (``funnel.evaluate``). Peer check in the same run: the ranker's held-out AUC and
logloss recomputed by scikit-learn (``roc_auc_score``, ``log_loss``) on the same predictions,
with the value difference and the time ratio.

    python benchmarks/funnel_eval.py --quick
    python benchmarks/funnel_eval.py --events 150000 --json out.json
    python benchmarks/funnel_eval.py --workspace W    # an existing workspace (no generation)
    python benchmarks/funnel_eval.py --set rank.oof_folds=0   # a funnel.toml variant
    python benchmarks/funnel_eval.py --seeds 7,8,9 --items 400 --json out.json  # mean, spread
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(fn, reps: int = 5) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    value = fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return float(value), (time.perf_counter() - t0) * 1e3 / reps


def _override(text: str) -> tuple[str, str, object]:
    """``SECTION.KEY=VALUE`` -> (section, key, TOML-parsed value)."""
    import tomllib

    name, sep, value = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise SystemExit(f"--set: expected SECTION.KEY=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"--set {text!r}: VALUE is not TOML ({exc})") from None
    return section, key, parsed


def _features_without(names: list[str], has_rank: bool) -> str:
    """``[[rank.features]]`` tables: the default specs minus ``names`` (TOML text)."""
    from funnel.config import _toml_value
    from funnel.rank.defaults import DEFAULT_FEATURES

    known = {spec["name"] for spec in DEFAULT_FEATURES}
    unknown = sorted(set(names) - known)
    if unknown:
        raise SystemExit(f"--drop-feature: unknown {unknown}; default specs are {sorted(known)}")
    lines = [] if has_rank else ["[rank]", ""]
    for spec in DEFAULT_FEATURES:
        if spec["name"] not in names:
            lines.append("[[rank.features]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
            lines.append("")
    return "\n".join(lines)


SEED_KEYS = {
    "ceiling_share": "rank_personal_gain_share_of_ceiling",
    "history_bound_share": "oracle_history_bound_share_of_ceiling",
    "bound_share": "rank_personal_gain_share_of_history_bound",
    "booking_gain": "booking_gain_vs_no_personalization",
    "search_gain": "search_gain_vs_no_personalization",
}
"""Contract keys aggregated over ``--seeds``: name -> the per-run key (its ``_ci95`` beside)."""


def _score_500_ratio(artifact: Path, reps: int = 200) -> dict[str, float]:
    """CPU ms of ``ServingRanker.score`` for 500 candidates (1 thread, a user with 6 past
    sessions), the din ranker against DeepFM from the same build; {} without both."""
    import torch

    from funnel.features.personalization import RecentActions, observe
    from funnel.rank.base import Ranker
    from funnel.rank.serving import ServingRanker, load_serving_ranker

    models = artifact / "rank" / "models"
    if not (models / "din").exists() or not (models / "deepfm").exists():
        return {}
    torch.set_num_threads(1)
    served = load_serving_ranker(artifact)
    rankers = {}
    for name in ("din", "deepfm"):
        rankers[name] = ServingRanker(
            ranker=Ranker.load(models / name), calibrator=served.calibrator,
            item_row=served.item_row, item_cols=served.item_cols, vectors=served.vectors,
            recent_k=served.recent_k, position=served.position,
            history_len=served.history_len).precompute()
    known = list(served.item_row)
    ids = (known * (500 // max(len(known), 1) + 1))[:500]  # 500 candidates, small catalogs too
    state, ts = RecentActions(max_len=50), 1_700_000_000_000
    for session in range(6):  # shown 10, clicked 2 (long) per session
        for p in range(10):
            state = observe(state, "impression", ids[(session * 37 + p) % len(ids)], ts_ms=ts,
                            request_id=f"r{session}", position=p + 1)
        for p in (3, 7):
            state = observe(state, "click", ids[(session * 37 + p) % len(ids)], ts_ms=ts + 5000,
                            dwell_ms=70_000, request_id=f"r{session}", position=p + 1)
        ts += 3_600_000
    out: dict[str, float] = {}
    for name, ranker in rankers.items():
        times = []
        for r in range(reps + 20):
            t0 = time.process_time()
            ranker.score(ids, query="", market=None, state=state, user_id="u1", now_ms=ts + r)
            if r >= 20:
                times.append(time.process_time() - t0)
        out[f"score_500_cpu_ms_{name}"] = float(np.median(times) * 1e3)
    out["score_500_cpu_ratio_seq_vs_deepfm"] = (out["score_500_cpu_ms_din"]
                                                / out["score_500_cpu_ms_deepfm"])
    return out


def _aggregate(rows: dict[int, dict[str, float]]) -> dict[str, float]:
    """Mean and spread over seeds of the personalization figures (issue contract keys), plus
    every per-run figure as ``seed<S>_<key>``."""
    out: dict[str, float] = {"seeds": float(len(rows))}
    for name, key in SEED_KEYS.items():
        values = [r[key] for r in rows.values() if key in r]
        if not values:
            continue
        out[f"{name}_mean"] = float(np.mean(values))
        out[f"{name}_min"] = float(np.min(values))
        out[f"{name}_max"] = float(np.max(values))
        lows = [r[key] - r[key + "_ci95"] for r in rows.values() if key + "_ci95" in r]
        if lows:
            out[f"{name}_ci_low_min"] = float(np.min(lows))
    ratio = [r["score_500_cpu_ratio_seq_vs_deepfm"] for r in rows.values()
             if "score_500_cpu_ratio_seq_vs_deepfm" in r]
    if ratio:
        out["score_500_cpu_ratio_seq_vs_deepfm"] = float(np.median(ratio))
    cpi = [r["train_clicks_per_item"] for r in rows.values() if "train_clicks_per_item" in r]
    if cpi:
        out["clicks_per_item"] = float(np.mean(cpi))
    for seed, row in rows.items():
        out.update({f"seed{seed}_{k}": v for k, v in row.items()})
    return out


DEFAULT_EVENTS_PER_ITEM = 350
"""``--items`` default: events / 350 items is ~21 clicks per item at 150k events (7.4 at the
generator's events / 100, 57 at events / 1150); the curve in RESULTS ("personalization and
data density") chose it."""


def _items(items: int | None, events: int) -> int | None:
    if items is None:
        return max(events // DEFAULT_EVENTS_PER_ITEM, 10)
    return items or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--items", type=int, default=None,
                        help="catalog size (default events / 350: ~21 clicks per item, the "
                             "least density where personalization measurably helped searches; "
                             "0 = the generator's events / 100, ~7 clicks per item)")
    parser.add_argument("--users", type=int, default=None,
                        help="user count (default events / 200: ~200 events of history each)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seeds", default=None, metavar="S1,S2,...",
                        help="run once per seed and report mean / spread (e.g. 7,8,9)")
    parser.add_argument("--max-cases", type=int, default=1000)
    parser.add_argument("--generative", action="store_true",
                        help="also build the generative recall source and report what it adds "
                             "(no_generative variant, recall.generative_gain)")
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one funnel.toml value (VALUE in TOML syntax)")
    parser.add_argument("--drop-feature", action="append", default=[], metavar="NAME",
                        help="train the rankers without this default feature spec (ablation)")
    args = parser.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    if len(seeds) == 1:
        row = _run(args, seeds[0])
    else:
        runs: dict[int, dict[str, float]] = {}
        for seed in seeds:
            print(f"# seed {seed}", flush=True)  # noqa: T201
            runs[seed] = _run(args, seed)
            if args.json is not None:  # an hour per seed: keep each as it finishes
                path = args.json.with_name(f"{args.json.stem}.seed{seed}{args.json.suffix}")
                path.write_text(json.dumps(runs[seed], indent=1, sort_keys=True))
                print(f"# seed {seed} done: {path}", flush=True)  # noqa: T201
        row = _aggregate(runs)
    for key, value in row.items():
        print(f"{key:45s} {value:12.4f}")  # noqa: T201
    if args.json is not None:
        args.json.write_text(json.dumps(row, indent=1, sort_keys=True))


def _run(args: argparse.Namespace, seed: int) -> dict[str, float]:
    """One generated marketplace (or ``--workspace``) evaluated end to end: the flat figures."""
    overrides = [_override(text) for text in args.set]
    events = 20_000 if args.quick else args.events
    max_cases = 200 if args.quick else args.max_cases

    from funnel.build import synthetic_workspace
    from funnel.evaluate.run import EvalConfig, evaluate_workspace
    from funnel.rank.metrics import auc, logloss
    from funnel.workspace import Workspace

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="funnel-eval-") as tmp:
        if args.workspace is not None:
            ws = Workspace.open(args.workspace)
            events = -1
        else:
            ws = synthetic_workspace(Path(tmp) / "ws", events=events, seed=seed,
                                     n_items=_items(args.items, events), n_users=args.users,
                                     stages=())
        if overrides or args.drop_feature:
            from funnel.config import dump_toml

            raw = ws.config()
            for section, key, value in overrides:
                raw.setdefault(section, {})[key] = value
            text = dump_toml(raw)
            if args.drop_feature:
                text += _features_without(args.drop_feature, "rank" in raw)
            ws.config_path.write_text(text)
        out = Path(tmp) / "evaluation"
        stages = None
        if args.generative:
            from funnel.evaluate.run import stages_for

            stages = (*stages_for(ws)[0], "generative")
        result = evaluate_workspace(ws, out, config=EvalConfig(max_cases=max_cases),  # type: ignore[arg-type]
                                    stages=stages)
        f = result.figures
        row: dict[str, float] = {"events": float(events), "nproc": float(os.cpu_count() or 0),
                                 "seconds_total": time.perf_counter() - t0}
        for kind in ("booking", "search", "next_click"):
            for variant in ("funnel", "popularity", "no_personalization", "no_session",
                            "no_rerank", "no_generative"):
                key = f"{variant}.{kind}.ndcg@10"
                if key in f:
                    row[f"{kind}_ndcg10_{variant}"] = f[key]
                    row[f"{kind}_ndcg10_{variant}_ci95"] = f[f"{key}.ci95"]
            if f"popularity.{kind}.ndcg@10" in f and f[f"popularity.{kind}.ndcg@10"] > 0:
                row[f"{kind}_ratio_funnel_vs_popularity"] = (
                    f[f"funnel.{kind}.ndcg@10"] / f[f"popularity.{kind}.ndcg@10"])
            if f"funnel.{kind}.n" in f:
                row[f"{kind}_cases"] = f[f"funnel.{kind}.n"]
            for base in ("popularity", "no_personalization", "no_session", "no_rerank",
                         "no_generative"):
                key = f"gain.funnel_vs_{base}.{kind}.ndcg@10"
                if key in f:  # paired; ci95 clustered by user, ci95_cases per case
                    for suffix in ("", ".ci95", ".ci95_cases", ".changed"):
                        name = f"{kind}_gain_vs_{base}" + suffix.replace(".", "_")
                        row[name] = f[key + suffix]
        for key in ("rank.auc", "rank.no_personalization.auc", "bayes.auc", "rank.logloss",
                    "rank.no_personalization.group_auc", "rank.personal_gain.group_auc",
                    "rank.no_user_id.group_auc", "rank.no_session.group_auc",
                    "oracle.bayes.group_auc", "oracle.no_personal.group_auc",
                    "oracle.personal_gain.group_auc", "rank.personal_gain.share_of_ceiling",
                    "oracle.history_bound.group_auc", "oracle.history_bound.share_of_ceiling",
                    "rank.personal_gain.share_of_history_bound",
                    "train.clicks_per_item",
                    "embed.mean_random_cosine", "funnel.tied_adjacent_scores@10",
                    "bayes.logloss", "rank.group_auc", "suggest.mrr", "suggest.mpc.mrr",
                    "recall.merged.booking.recall@500", "funnel.ild@10", "no_rerank.ild@10",
                    "funnel.catalog_coverage", "latency.total.p50_ms", "latency.total.p95_ms",
                    "latency.rank.p50_ms", "latency.recall.p50_ms", "latency.rerank.p50_ms"):
            if key in f:
                row[key.replace(".", "_").replace("@", "")] = f[key]
        for key in sorted(k for k in f if k.startswith(("recall.generative", "recall.merged."))
                          and ".recall@" in k):  # what generative recall adds (--generative)
            row[key.replace(".", "_").replace("@", "")] = f[key]
        for key in sorted(k for k in f if k.startswith("skew.")):
            row[key.replace(".", "_")] = f[key]  # session-feature group AUC before/after split
        row.update(_score_500_ratio(
            Workspace.open(out / "train-workspace").artifacts.require_current()))
        preds = result.details.get("ranker_predictions")
        if preds is not None and preds["y"].size:
            from sklearn.metrics import log_loss, roc_auc_score

            y, p = preds["y"], preds["p"]
            ours_auc, ours_ms = _timed(lambda: auc(y, p))
            sk_auc, sk_ms = _timed(lambda: roc_auc_score(y, p))
            ours_ll, ours_ll_ms = _timed(lambda: logloss(y, p))
            sk_ll, sk_ll_ms = _timed(lambda: log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)))
            row.update({"auc_ours": ours_auc, "auc_sklearn": sk_auc,
                        "auc_abs_diff": abs(ours_auc - sk_auc),
                        "auc_time_ratio_ours_vs_sklearn": ours_ms / sk_ms,
                        "logloss_ours": ours_ll, "logloss_sklearn": sk_ll,
                        "logloss_abs_diff": abs(ours_ll - sk_ll),
                        "logloss_time_ratio_ours_vs_sklearn": ours_ll_ms / sk_ll_ms})
    return row




if __name__ == "__main__":
    main()
