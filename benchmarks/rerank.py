"""Re-ranking: DPP fast greedy MAP vs naive greedy, MMR vs naive MMR, scatter, pipeline; and
the listwise model's expected clicks against the ranker's order and tuned DPP.

Same candidates for every method: n item embeddings (d dims, 20 planted clusters) with ranker
scores, re-ranked to k. "ours" is the public API end to end (validation, similarity factor,
numba greedy). Baselines run on the same kernel in the same process:

- DPP naive greedy (``funnel.rerank.dpp.dpp_greedy_naive``): a fresh log-determinant for every
  remaining candidate at every step (batched slogdet), i.e. no incremental Cholesky;
- DPP numpy reference: Chen et al.'s Algorithm 1 vectorized in numpy (the shape of the
  authors' public reference code), to separate the algorithm's win from numba's;
- MMR naive: recompute every candidate's max similarity to all chosen items each step.

No PyPI library offers DPP greedy MAP inference (DPPy only samples), so the peer is the
naive and reference implementations. Every selection is checked equal to the fast one.

Listwise re-ranking (issue 24): generated marketplaces whose clicks have list context
(near-duplicates of one brand cannibalize each other, a click may end the scan), built with
``[rerank] search_method = "listwise"`` and evaluated by ``funnel evaluate`` on their held-out
searches: the exact expected clicks per list (k=10) under the generator's true click model of
the ranker's order, DPP at the diversity tuned on half the lists, and the listwise order
(seeds 7, 8, 9; ``--quick``: seed 7 at 40k events), then the same with the context off.

    python benchmarks/rerank.py --quick
    python benchmarks/rerank.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import median_seconds  # benchmarks/_timing.py (the script directory is on sys.path)
from threadpoolctl import threadpool_limits

from funnel.rerank import DPPReranker, ItemFeatures, MMRReranker
from funnel.rerank.base import normalize_relevance
from funnel.rerank.dpp import dpp_greedy, dpp_greedy_lowrank, dpp_greedy_naive, tradeoff_alpha
from funnel.rerank.mmr import mmr_greedy_lowrank
from funnel.rerank.pipeline import RerankConfig, RerankPipeline
from funnel.rerank.scatter import ScatterRule, scatter
from funnel.rerank.similarity import embedding_factor


def timeit(fn: Callable[[], Any], reps: int) -> float:
    """Median wall time in ms over ``reps`` calls (after one warm-up call)."""
    return median_seconds(fn, reps) * 1e3


def dpp_numpy_reference(kernel: np.ndarray, k: int, epsilon: float = 1e-10) -> np.ndarray:
    """Chen et al. 2018 Algorithm 1 with numpy vector ops per step (O(k^2 n) work)."""
    n = kernel.shape[0]
    cis = np.zeros((k, n))
    d2 = np.diag(kernel).copy()
    j = int(np.argmax(d2))
    selected = [j]
    while len(selected) < k:
        t = len(selected) - 1
        ci_opt = cis[:t, j]
        di_opt = np.sqrt(d2[j])
        eis = (kernel[j, :] - ci_opt @ cis[:t, :]) / di_opt
        cis[t, :] = eis
        d2 -= eis**2
        d2[selected] = -np.inf
        j = int(np.argmax(d2))
        if d2[j] < epsilon:
            break
        selected.append(j)
    return np.array(selected, dtype=np.int64)


def mmr_naive(relevance: np.ndarray, sim: np.ndarray, k: int, lam: float) -> np.ndarray:
    """MMR recomputing each candidate's max similarity to the whole chosen set every step."""
    chosen: list[int] = []
    rest = list(range(len(relevance)))
    for _ in range(min(k, len(rest))):
        best, best_score = -1, -np.inf
        for i in rest:
            penalty = max((sim[i, j] for j in chosen), default=0.0)
            score = lam * relevance[i] - (1 - lam) * penalty
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
        rest.remove(best)
    return np.array(chosen, dtype=np.int64)


def make_candidates(n: int, d: int, seed: int) -> tuple[list[str], np.ndarray, ItemFeatures]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, d))
    labels = rng.integers(0, 20, size=n)
    vectors = centers[labels] + 0.5 * rng.normal(size=(n, d))
    scores = rng.normal(size=n) - 0.05 * labels
    order = np.argsort(-scores)
    ids = [f"i{i}" for i in range(n)]
    attrs = {"brand": [f"b{x % 30}" for x in labels], "category": [f"c{x % 8}" for x in labels]}
    feats = ItemFeatures(vectors=vectors[order].astype(np.float32),
                         attributes={a: [v[i] for i in order] for a, v in attrs.items()})
    return ids, scores[order], feats


def run(n: int, k: int, d: int, reps: int, naive_reps: int, theta: float) -> dict[str, float]:
    ids, scores, feats = make_candidates(n, d, seed=0)
    out: dict[str, float] = {}
    diversity = 1.0 - theta
    dpp = DPPReranker(diversity=diversity, similarity="embedding")
    out["dpp_ms"] = timeit(lambda: dpp.rerank(ids, scores, k=k, features=feats), reps)
    dpp_win = DPPReranker(diversity=diversity, similarity="embedding", window=10)
    out["dpp_window10_ms"] = timeit(lambda: dpp_win.rerank(ids, scores, k=k, features=feats),
                                    reps)

    # the same kernel as DPPReranker builds, dense, for the baselines
    B = embedding_factor(np.asarray(feats.vectors))
    r = normalize_relevance(scores)
    q = np.exp(tradeoff_alpha(theta) * (r - 1.0))
    L = q[:, None] * (B @ B.T + 1e-3 * np.eye(n)) * q[None, :]
    fast_sel, _ = dpp_greedy_lowrank(B, q, k, jitter=1e-3)
    out["dpp_select_only_ms"] = timeit(lambda: dpp_greedy_lowrank(B, q, k, jitter=1e-3), reps)
    out["dpp_dense_kernel_ms"] = timeit(lambda: dpp_greedy(L, k), reps)
    out["dpp_numpy_reference_ms"] = timeit(lambda: dpp_numpy_reference(L, k), reps)

    def numpy_end_to_end() -> np.ndarray:  # same work as ours: factor, kernel, selection
        Bn = embedding_factor(np.asarray(feats.vectors))
        rn = normalize_relevance(scores)
        qn = np.exp(tradeoff_alpha(theta) * (rn - 1.0))
        Ln = qn[:, None] * (Bn @ Bn.T + 1e-3 * np.eye(n)) * qn[None, :]
        return dpp_numpy_reference(Ln, k)

    out["dpp_numpy_reference_end_to_end_ms"] = timeit(numpy_end_to_end, reps)
    out["dpp_same_selection_as_numpy_reference"] = float(
        dpp_numpy_reference(L, k).tolist() == fast_sel.tolist())
    out["dpp_speedup_vs_numpy_reference"] = (out["dpp_numpy_reference_end_to_end_ms"]
                                             / out["dpp_ms"])
    if naive_reps == 0:  # the naive baselines are too slow for the large size
        return _mmr_scatter_pipeline(out, ids, scores, feats, k, reps, diversity)
    t0 = time.perf_counter()
    for _ in range(naive_reps):
        naive_sel = dpp_greedy_naive(L, k)
    out["dpp_naive_ms"] = (time.perf_counter() - t0) * 1e3 / naive_reps
    out["dpp_same_selection_as_naive"] = float(naive_sel.tolist() == fast_sel.tolist())
    out["dpp_speedup_vs_naive"] = out["dpp_naive_ms"] / out["dpp_ms"]
    out = _mmr_scatter_pipeline(out, ids, scores, feats, k, reps, diversity)
    S = B @ B.T
    t0 = time.perf_counter()
    naive_mmr = mmr_naive(r, S, k, theta)
    out["mmr_naive_ms"] = (time.perf_counter() - t0) * 1e3
    out["mmr_same_selection_as_naive"] = float(
        naive_mmr.tolist() == mmr_greedy_lowrank(r, B, k, lam=theta).tolist())
    out["mmr_speedup_vs_naive"] = out["mmr_naive_ms"] / out["mmr_ms"]
    return out


def _mmr_scatter_pipeline(out: dict[str, float], ids: list[str], scores: np.ndarray,
                          feats: ItemFeatures, k: int, reps: int, diversity: float
                          ) -> dict[str, float]:
    n = len(ids)
    mmr = MMRReranker(diversity=diversity, similarity="embedding")
    out["mmr_ms"] = timeit(lambda: mmr.rerank(ids, scores, k=k, features=feats), reps)

    rules = [ScatterRule("brand", 1, 3), ScatterRule("category", 2, 5)]
    out["scatter_ms"] = timeit(
        lambda: scatter(np.arange(n), feats.attributes, rules, k), reps)
    cfg = RerankConfig(method="dpp", diversity=diversity, k=k, similarity="embedding",
                       scatter=tuple({"attribute": r.attribute, "max_count": r.max_count,
                                      "window": r.window} for r in rules),
                       sponsored_positions=(2, 8), ecpm_floor=0.5,
                       merch=({"action": "pin", "item_id": ids[40], "position": 0},
                              {"action": "bury", "attribute": "brand", "value": "b3"}))
    pipe = RerankPipeline(cfg)
    sp_ids = [f"s{i}" for i in range(5)]
    sp_feats = ItemFeatures(attributes={"brand": ["sb1", "sb2", "sb3", "sb4", "sb5"],
                                        "category": ["c1"] * 5})
    res = pipe.rerank(ids, scores, features=feats, sponsored_ids=sp_ids,
                      sponsored_ecpm=[0.9, 0.2, 0.7, 0.6, 0.1], sponsored_features=sp_feats)
    out["pipeline_scatter_satisfied"] = float(res.scatter.satisfied)
    steps: dict[str, list[float]] = {}

    def run_pipeline() -> None:
        res = pipe.rerank(ids, scores, features=feats, sponsored_ids=sp_ids,
                          sponsored_ecpm=[0.9, 0.2, 0.7, 0.6, 0.1], sponsored_features=sp_feats)
        for step, ms in res.timings_ms.items():
            steps.setdefault(step, []).append(ms)

    out["pipeline_ms"] = timeit(run_pipeline, reps)
    out.update({f"pipeline_step_{step}_ms": float(np.median(v)) for step, v in steps.items()})
    return out


def synthetic_curve(n_events: int, n_lists: int) -> dict[str, float]:
    """DPP vs MMR trade-off on the synthetic marketplace's logged impression lists (k=10)."""
    from funnel.data.store import memory_store
    from funnel.data.synthetic import MarketplaceConfig, generate_tables
    from funnel.rerank.catalog import ItemCatalog
    from funnel.rerank.curve import logged_lists, tradeoff_curve

    tables = generate_tables(MarketplaceConfig(n_events=n_events, seed=11))
    con = memory_store({name: tables[name] for name in ("items", "events", "truth")})
    lists = logged_lists(con, ItemCatalog.from_items(tables["items"]), limit=n_lists)
    points = tradeoff_curve(lists, knobs=(0.0, 0.3, 0.6, 0.9), k=10,
                            attributes=("category", "brand", "price_band"))
    out: dict[str, float] = {"synthetic_lists": float(len(lists))}
    for p in points:
        key = f"synthetic_{p.method}_div{p.diversity:g}"
        out.update({f"{key}_ndcg_kept": p.ndcg, f"{key}_true_ndcg": p.ndcg_true,
                    f"{key}_category_coverage": p.category_coverage,
                    f"{key}_brand_entropy": p.brand_entropy, f"{key}_ms_per_list": p.ms_per_list})
    return out


LISTWISE_KEYS = ("pointwise", "dpp", "listwise", "truth", "oracle")
"""Orders reported; ``truth`` (by the true attraction) and ``oracle`` (greedy with the true
click model) are yardsticks of what any order could reach, not methods."""


def listwise_run(events: int, seed: int, *, context: dict[str, float] | None,
                 max_requests: int) -> dict[str, float]:
    """One generated marketplace (list context on or off) built with the listwise model on
    searches and evaluated on its held-out period: ``funnel evaluate``'s ``rerank.context.*``."""
    import tempfile
    from pathlib import Path

    from funnel.build import synthetic_workspace
    from funnel.config import dump_toml
    from funnel.evaluate.run import EvalConfig, evaluate_workspace

    knobs = context or {}
    with tempfile.TemporaryDirectory(prefix="funnel-listwise-") as tmp:
        ws = synthetic_workspace(Path(tmp) / "ws", events=events, seed=seed,
                                 n_items=max(events // 350, 50), stages=(), **knobs)
        raw = ws.config()
        raw.setdefault("rerank", {})["search_method"] = "listwise"
        ws.config_path.write_text(dump_toml(raw))
        result = evaluate_workspace(ws, Path(tmp) / "evaluation", config=EvalConfig(
            max_cases=100, max_ranker_requests=max_requests))
    return {k: v for k, v in result.figures.items() if k.startswith("rerank.context.")}


def listwise_figures(events: int, seeds: tuple[int, ...], max_requests: int,
                     context: dict[str, float]) -> dict[str, float]:
    """Expected clicks per list of the ranker's order, tuned DPP and the listwise order on
    held-out searches, with the generator's list context on (each seed) and off."""
    out: dict[str, float] = {}
    ratios = []
    for seed in seeds:
        f = listwise_run(events, seed, context=context, max_requests=max_requests)
        for name in LISTWISE_KEYS:
            out[f"expected_clicks_{name}_seed{seed}"] = f.get(
                f"rerank.context.{name}.clicks", float("nan"))
        ratios.append(f.get("rerank.context.listwise_vs_best", float("nan")))
        out[f"listwise_vs_best_seed{seed}"] = ratios[-1]
        out[f"listwise_minus_best_ci_low_seed{seed}"] = f.get(
            "rerank.context.listwise_minus_best.ci_low", float("nan"))
        out[f"dpp_diversity_seed{seed}"] = f.get("rerank.context.dpp_diversity", float("nan"))
        out[f"context_lists_seed{seed}"] = f.get("rerank.context.lists", float("nan"))
    for name in LISTWISE_KEYS:
        out[f"expected_clicks_{name}"] = float(np.mean(
            [out[f"expected_clicks_{name}_seed{s}"] for s in seeds]))
    out["listwise_vs_best_min"] = float(np.min(ratios))
    off = listwise_run(events, seeds[0], context=None, max_requests=max_requests)
    out["expected_clicks_listwise_no_context"] = off.get("rerank.context.listwise.clicks",
                                                         float("nan"))
    out["expected_clicks_pointwise_no_context"] = off.get("rerank.context.pointwise.clicks",
                                                          float("nan"))
    return out


def listwise_cpu_ms(n: int = 50, k: int = 20, reps: int = 200) -> float:
    """CPU ms per call of the listwise model re-ranking ``n`` candidates to ``k``, on a model
    trained on a small generated log (the cost does not depend on what it learned)."""
    from funnel.rerank.listwise import ListwiseReranker, LoggedList

    rng = np.random.default_rng(0)
    brands = [f"b{i}" for i in range(8)]

    def attrs(m: int) -> dict[str, list[str | None]]:
        return {"brand": [brands[j] for j in rng.integers(0, 8, m)],
                "category": [f"c{j}" for j in rng.integers(0, 3, m)]}

    lists = [LoggedList(scores=rng.normal(size=10), attributes=attrs(10),
                        vectors=rng.normal(size=(10, 32)), clicked=rng.random(10) < 0.2)
             for _ in range(200)]
    model = ListwiseReranker(epochs=2).fit_lists(lists)
    feats = ItemFeatures(vectors=rng.normal(size=(n, 32)), attributes=attrs(n))
    scores = rng.normal(size=n)
    model.order(scores, feats, k)
    t0 = time.process_time()
    for _ in range(reps):
        model.order(scores, feats, k)
    return (time.process_time() - t0) / reps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, one size")
    parser.add_argument("--json", type=str, default=None, help="write flat JSON here")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension")
    parser.add_argument("--theta", type=float, default=0.7,
                        help="relevance weight (1 - diversity) of DPP and MMR")
    parser.add_argument("--no-listwise", action="store_true",
                        help="skip the listwise model's expected-clicks runs (builds)")
    parser.add_argument("--listwise-events", type=int, default=150_000,
                        help="events per generated marketplace of the listwise runs")
    parser.add_argument("--context-strength", type=float, default=None,
                        help="the generator's list context (default: LIST_CONTEXT's 0.3)")
    parser.add_argument("--continue-after-click", type=float, default=None,
                        help="the generator's continue-after-click (default: LIST_CONTEXT's 0.7)")
    parser.add_argument("--seeds", type=str, default=None,
                        help="comma-separated seeds of the listwise runs (default 7,8,9)")
    args = parser.parse_args()
    # one BLAS thread for the numpy baselines: the machine is shared, and our kernels are
    # single-threaded numba, so both sides get one core
    threadpool_limits(1)
    reps = 30 if args.quick else 200
    naive_reps = 1 if args.quick else 3

    results: dict[str, float] = {"n_candidates": 500.0, "k": 50.0, "dim": float(args.dim),
                                 "theta": args.theta, "nproc": float(os.cpu_count() or 0)}
    main_run = run(500, 50, args.dim, reps, naive_reps, args.theta)
    results.update(main_run)
    results["dpp_500_to_50_ms"] = main_run["dpp_ms"]
    results["mmr_500_to_50_ms"] = main_run["mmr_ms"]
    results["scatter_500_to_50_ms"] = main_run["scatter_ms"]
    results["pipeline_500_to_50_ms"] = main_run["pipeline_ms"]
    if not args.quick:
        big = run(2000, 100, args.dim, 20, 0, args.theta)
        results.update({f"n2000_k100_{k}": v for k, v in big.items()})
    results.update(synthetic_curve(20_000 if args.quick else 100_000,
                                   100 if args.quick else 1000))
    results["listwise_50_ms"] = listwise_cpu_ms()
    if not args.no_listwise:
        from funnel.data.synthetic.context import LIST_CONTEXT

        seeds = (tuple(int(x) for x in args.seeds.split(",")) if args.seeds
                 else (7,) if args.quick else (7, 8, 9))
        context = dict(LIST_CONTEXT)
        if args.context_strength is not None:
            context["context_strength"] = args.context_strength
        if args.continue_after_click is not None:
            context["continue_after_click"] = args.continue_after_click
        results.update({f"generator_{k}": v for k, v in context.items()})
        results.update(listwise_figures(40_000 if args.quick else args.listwise_events, seeds,
                                        600 if args.quick else 3000, context))

    width = max(len(k) for k in results)
    print(f"re-rank benchmark (n=500 -> k=50, d={args.dim}, theta={args.theta}, "
          f"{'quick' if args.quick else 'full'})")
    for key, value in results.items():
        print(f"  {key:<{width}}  {value:12.4f}")
    print(f"DPP: {results['dpp_500_to_50_ms']:.3f} ms (target < 2 ms), "
          f"{results['dpp_speedup_vs_naive']:.0f}x faster than the naive greedy, "
          f"{results['dpp_speedup_vs_numpy_reference']:.1f}x faster than numpy Algorithm 1")
    print(f"MMR: {results['mmr_500_to_50_ms']:.3f} ms, "
          f"{results['mmr_speedup_vs_naive']:.0f}x faster than naive MMR")
    for method in ("dpp", "mmr"):
        base, div = f"synthetic_{method}_div0", f"synthetic_{method}_div0.6"
        print(f"synthetic ({int(results['synthetic_lists'])} logged lists, k=10) {method} at "
              f"diversity 0.6: NDCG kept {results[div + '_ndcg_kept']:.3f}, category coverage "
              f"{results[base + '_category_coverage']:.3f} -> "
              f"{results[div + '_category_coverage']:.3f}, brand entropy "
              f"{results[base + '_brand_entropy']:.2f} -> {results[div + '_brand_entropy']:.2f}")
    print(f"listwise model: {results['listwise_50_ms']:.2f} ms CPU to re-rank 50 candidates "
          f"to 20 (target <= 5 ms)")
    if "expected_clicks_listwise" in results:
        best = max(results["expected_clicks_pointwise"], results["expected_clicks_dpp"])
        print(f"expected clicks per list (k=10, held-out searches): pointwise "
              f"{results['expected_clicks_pointwise']:.4f}, tuned DPP "
              f"{results['expected_clicks_dpp']:.4f}, listwise "
              f"{results['expected_clicks_listwise']:.4f} "
              f"({results['expected_clicks_listwise'] / best:.3f}x the better; target 1.03x); "
              f"context off: listwise {results['expected_clicks_listwise_no_context']:.4f} vs "
              f"pointwise {results['expected_clicks_pointwise_no_context']:.4f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
