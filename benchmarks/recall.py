"""Vector recall benchmark: our VectorIndex vs raw faiss HNSW vs hnswlib on the same vectors.

Clustered unit vectors (n x 64, 8 markets), exact top-10 by brute force as ground truth. Each
library is swept over its search beam (efSearch / ef); we report the QPS at the smallest beam
reaching recall@10 >= 0.95: batch (one call, best of 3) and single query (1 / median latency of
one call: on a shared machine loop totals measure the other jobs), plus build time and index
size. The wrapper overhead is also measured on the very same graph, ours vs raw faiss calls
alternated query by query. Filtered: queries restricted to one market, through our per-market
partitions (the default) and through a bitmap selector on the global graph.

    python benchmarks/recall.py --quick --json /tmp/recall.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable
from functools import partial

import faiss
import hnswlib
import numpy as np
import psutil

from funnel.recall.vector_index import VectorIndex

EFS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768)
TARGET = 0.95
K = 10


def rss_mb() -> float:
    gc.collect()
    return psutil.Process(os.getpid()).memory_info().rss / 1e6


def faiss_mb(index: faiss.Index) -> float:
    """Size of the index structure itself (vectors + graph), from its serialized form."""
    return float(faiss.serialize_index(index).nbytes) / 1e6


def median_call(fn: Callable[[int], object], n: int) -> tuple[list[object], float]:
    """Results of ``fn(i)`` for i < n and the median seconds per call. On a shared machine a
    loop total is dominated by the calls during which the process was descheduled; the median
    call is the latency a query really costs."""
    out, times = [], np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        out.append(fn(i))
        times[i] = time.perf_counter() - t0
    return out, float(np.median(times))


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 5) -> dict[str, float]:
    """Best-of-``rounds`` seconds per function, alternating them so that load from other jobs
    on the shared machine hits every contender alike."""
    best = dict.fromkeys(fns, float("inf"))
    names = list(fns)
    for r in range(rounds):
        # reverse the order every other round: whoever runs right after another contender on
        # the same queries finds the graph in cache
        for name in names if r % 2 == 0 else names[::-1]:
            fn = fns[name]
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def make_data(n: int, d: int, n_queries: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_clusters = max(16, n // 1000)
    centres = rng.normal(size=(n_clusters, d)).astype(np.float32)
    x = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 200_000):  # chunks keep the float64 temporaries small
        hi = min(n, lo + 200_000)
        lab = rng.integers(0, n_clusters, hi - lo)
        x[lo:hi] = centres[lab] + 0.35 * rng.normal(size=(hi - lo, d)).astype(np.float32)
    faiss.normalize_L2(x)
    q = centres[rng.integers(0, n_clusters, n_queries)] + 0.35 * rng.normal(
        size=(n_queries, d)
    ).astype(np.float32)
    q = q.astype(np.float32)
    faiss.normalize_L2(q)
    markets = rng.integers(0, 8, n)
    q_markets = rng.integers(0, 8, n_queries)
    return x, q, markets, q_markets


def exact_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    return flat.search(q, k)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    pairs = zip(found, truth, strict=True)
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in pairs]))


def timed(fn: Callable[[], object], repeats: int = 3) -> tuple[object, float]:
    """Result and best-of-``repeats`` seconds (the machine is shared: the minimum is the
    least disturbed run)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def sweep(
    name: str,
    set_ef: Callable[[int], None],
    batch: Callable[[np.ndarray], np.ndarray],
    single: Callable[[np.ndarray], np.ndarray],
    q: np.ndarray,
    truth: np.ndarray,
) -> dict[str, float]:
    """Smallest ef reaching TARGET recall; QPS there (batch and single)."""
    best: dict[str, float] = {}
    for ef in EFS:
        set_ef(ef)
        found, batch_s = timed(lambda: batch(q), repeats=1)
        r = recall(found, truth)
        if r >= TARGET or ef == EFS[-1]:
            found, batch_s = timed(lambda: batch(q))
            single_out, single_s = median_call(lambda i: single(q[i]), len(q))
            single_found = np.stack(single_out)
            best = {
                "ef": ef, "recall10": r, "qps_batch": len(q) / batch_s,
                "qps_single": 1.0 / single_s,
                "recall10_single": recall(single_found, truth),
            }
            break
    print(f"  {name:<22} ef={best['ef']:<4} recall@10={best['recall10']:.3f} "
          f"QPS batch={best['qps_batch']:,.0f} single={best['qps_single']:,.0f}")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k vectors instead of 1M")
    ap.add_argument("--n", type=int, default=None, help="override the number of vectors")
    ap.add_argument("--threads", type=int, default=2, help="threads for building (search: 1)")
    ap.add_argument("--json", type=str, default=None, help="write the flat results here")
    args = ap.parse_args()
    n = args.n or (100_000 if args.quick else 1_000_000)
    d, n_queries, m, efc = 64, 1000 if args.quick else 2000, 32, 80
    print(f"recall benchmark: {n:,} x {d} clustered vectors, {n_queries} queries, HNSW M={m} "
          f"efConstruction={efc}, build threads={args.threads}, search threads=1, "
          f"nproc={os.cpu_count()}")
    x, q, markets, q_markets = make_data(n, d, n_queries)
    ids = [f"item{i}" for i in range(n)]
    market_names = [f"m{i}" for i in range(8)]
    market_col = [market_names[i] for i in markets]
    t0 = time.perf_counter()
    truth_rows = exact_topk(x, q, K)
    truth = np.array(ids, dtype=object)[truth_rows]
    truth_f = np.empty((n_queries, K), dtype=object)
    for mk in range(8):
        rows = np.flatnonzero(markets == mk)
        sel = np.flatnonzero(q_markets == mk)
        truth_f[sel] = np.array(ids, dtype=object)[rows[exact_topk(x[rows], q[sel], K)]]
    print(f"  exact ground truth in {time.perf_counter() - t0:.1f}s")
    out: dict[str, float] = {"n": n, "d": d, "n_queries": n_queries, "nproc": os.cpu_count() or 0}

    # ---- ours ----------------------------------------------------------------------------
    faiss.omp_set_num_threads(args.threads)
    base = rss_mb()
    t0 = time.perf_counter()
    ours = VectorIndex(kind="hnsw", metric="cosine", hnsw_m=m, ef_construction=efc).fit(
        ids, x, {"market": market_col, "region": market_col}
    )
    out["build_s_ours"] = time.perf_counter() - t0
    out["rss_mb_ours"] = rss_mb() - base
    out["index_mb_ours"] = faiss_mb(ours.index_) + sum(
        faiss_mb(p) for p in ours.partitions_.values()
    )
    print(f"  ours built in {out['build_s_ours']:.1f}s (global graph + 8 market graphs), "
          f"index {out['index_mb_ours']:.0f} MB, RSS +{out['rss_mb_ours']:.0f} MB")
    faiss.omp_set_num_threads(1)

    def ours_set(ef: int) -> None:
        ours.ef_search = ef

    r = sweep("ours", ours_set, lambda qq: ours.search(qq, K).ids,
              lambda v: ours.search(v, K).ids, q, truth)
    out.update(qps_ours=r["qps_batch"], qps_ours_single=r["qps_single"],
               recall10_ours=r["recall10"], ef_ours=r["ef"])
    # wrapper overhead: ours vs raw faiss calls on the very same graph, interleaved
    ours.ef_search = int(r["ef"])
    raw = ours.index_
    raw.hnsw.efSearch = int(r["ef"])
    qn = q.copy()
    faiss.normalize_L2(qn)
    t = interleaved({
        "ours_batch": lambda: ours.search(q, K),
        "raw_batch": lambda: raw.search(qn, K),
    })
    per_query = np.empty((len(q), 2))
    for i in range(len(q)):
        # alternate per query, and alternate who goes first: the second search of the same
        # query finds the graph nodes already in cache
        calls = [lambda i=i: ours.search(q[i], K), lambda i=i: raw.search(qn[i : i + 1], K)]
        for j in ((0, 1) if i % 2 else (1, 0)):
            t0 = time.perf_counter()
            calls[j]()
            per_query[i, j] = time.perf_counter() - t0
    med_ours, med_raw = np.median(per_query, axis=0)
    out["latency_us_ours_single"] = med_ours * 1e6
    out["latency_us_raw_single"] = med_raw * 1e6
    out["overhead_ratio_batch"] = t["raw_batch"] / t["ours_batch"]
    out["overhead_ratio_single"] = med_raw / med_ours
    print(f"  same graph, interleaved: ours/raw QPS batch {out['overhead_ratio_batch']:.3f}, "
          f"single {out['overhead_ratio_single']:.3f}")

    def filtered(attr: str) -> tuple[Callable, Callable]:
        def batch(qq: np.ndarray) -> np.ndarray:
            res = np.empty((len(qq), K), dtype=object)
            for mk in range(8):
                sel = np.flatnonzero(q_markets == mk)
                res[sel] = ours.search(qq[sel], K, filters={attr: market_names[mk]}).ids
            return res

        def single_all(qq: np.ndarray) -> float:
            """Median seconds of one filtered query."""
            return median_call(
                lambda i: ours.search(qq[i], K, filters={attr: market_names[q_markets[i]]}),
                len(qq),
            )[1]

        return batch, single_all

    for attr, label in (("market", "partition"), ("region", "selector")):
        batch_fn, single_fn = filtered(attr)
        best: dict[str, float] = {}
        for ef in EFS:
            ours.ef_search = ef
            found, bs = timed(partial(batch_fn, q), repeats=1)
            rr = recall(found, truth_f)
            if rr >= TARGET or ef == EFS[-1]:
                found, bs = timed(partial(batch_fn, q))
                ss = single_fn(q)
                best = {"ef": ef, "recall10": rr, "qps_batch": n_queries / bs,
                        "qps_single": 1.0 / ss}
                break
        print(f"  ours filtered ({label:<9}) ef={best['ef']:<4} recall@10={best['recall10']:.3f} "
              f"QPS batch={best['qps_batch']:,.0f} single={best['qps_single']:,.0f}")
        suffix = "" if label == "partition" else "_selector"
        out[f"qps_ours_filtered{suffix}"] = best["qps_batch"]
        out[f"qps_ours_filtered{suffix}_single"] = best["qps_single"]
        out[f"recall10_ours_filtered{suffix}"] = best["recall10"]
        out[f"ef_ours_filtered{suffix}"] = best["ef"]
    ours = None  # free the graphs before the next build
    gc.collect()

    # ---- raw faiss HNSW ------------------------------------------------------------------
    faiss.omp_set_num_threads(args.threads)
    base = rss_mb()
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    index.add(x)
    out["build_s_faiss"] = time.perf_counter() - t0
    out["rss_mb_faiss"] = rss_mb() - base
    out["index_mb_faiss"] = faiss_mb(index)
    print(f"  faiss built in {out['build_s_faiss']:.1f}s, index {out['index_mb_faiss']:.0f} MB, "
          f"RSS +{out['rss_mb_faiss']:.0f} MB")
    faiss.omp_set_num_threads(1)
    id_arr = np.array(ids, dtype=object)
    params = {"ef": 16}

    def faiss_set(ef: int) -> None:
        index.hnsw.efSearch = ef
        params["ef"] = ef

    r = sweep("raw faiss HNSW", faiss_set, lambda qq: id_arr[index.search(qq, K)[1]],
              lambda v: id_arr[index.search(v[None, :], K)[1][0]], q, truth)
    out.update(qps_faiss=r["qps_batch"], qps_faiss_single=r["qps_single"],
               recall10_faiss=r["recall10"], ef_faiss=r["ef"])
    index = None
    gc.collect()

    # ---- hnswlib -------------------------------------------------------------------------
    base = rss_mb()
    t0 = time.perf_counter()
    hl = hnswlib.Index(space="ip", dim=d)
    hl.init_index(max_elements=n, ef_construction=efc, M=m, random_seed=0)
    hl.add_items(x, np.arange(n), num_threads=args.threads)
    out["build_s_hnswlib"] = time.perf_counter() - t0
    out["rss_mb_hnswlib"] = rss_mb() - base
    out["index_mb_hnswlib"] = float(hl.index_file_size()) / 1e6
    print(f"  hnswlib built in {out['build_s_hnswlib']:.1f}s, index "
          f"{out['index_mb_hnswlib']:.0f} MB, RSS +{out['rss_mb_hnswlib']:.0f} MB")
    hl.set_num_threads(1)
    r = sweep("hnswlib", hl.set_ef, lambda qq: id_arr[hl.knn_query(qq, k=K)[0]],
              lambda v: id_arr[hl.knn_query(v, k=K)[0][0]], q, truth)
    out.update(qps_hnswlib=r["qps_batch"], qps_hnswlib_single=r["qps_single"],
               recall10_hnswlib=r["recall10"], ef_hnswlib=r["ef"])

    # ---- ratios --------------------------------------------------------------------------
    out["ratio_ours_vs_faiss"] = out["qps_ours"] / out["qps_faiss"]
    out["ratio_ours_vs_faiss_single"] = out["qps_ours_single"] / out["qps_faiss_single"]
    out["ratio_ours_vs_hnswlib"] = out["qps_ours"] / out["qps_hnswlib"]
    out["ratio_filtered_vs_unfiltered"] = out["qps_ours_filtered"] / out["qps_ours"]
    out["ratio_filtered_selector_vs_unfiltered"] = (
        out["qps_ours_filtered_selector"] / out["qps_ours"]
    )
    print("ratios:")
    for key in [k for k in out if k.startswith("ratio_")]:
        print(f"  {key:<40} {out[key]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, sort_keys=True)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
