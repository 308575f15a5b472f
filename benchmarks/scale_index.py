"""Past 1M items: DiskIVFPQIndex at 10M vectors vs faiss HNSW at the largest size that fits well.

Data: a fixed Gaussian mixture in d = 64 (10,000 centres ~ N(0, I), per-dimension noise
sigma 0.35, then L2-normalised; the recipe of ``benchmarks/recall.py`` with the number of
centres fixed, so every size samples the same distribution and 10M is 10x denser than 1M).
Vectors are written in 250k-row chunks, each from its own seeded generator, straight to a
``.npy`` memory map in the cache dir (so a smaller size is a prefix of a larger one: the peer
indexes the first ``peer_n`` rows of the same file). 1,000 queries come from the same mixture,
not from the indexed rows. Ground truth: exact top-10 inner product by faiss brute force over
1M-row chunks. Everything is cached by size and seed.

Ours (``funnel.recall.disk_index.DiskIVFPQIndex``): IVF-PQ fast-scan codes (4-bit, d/2
sub-quantizers: 16 B per vector, plus faiss's 8 B row id) in RAM, the float32 vectors in the
memory-mapped ``.npy`` read only to re-rank each query's shortlist exactly. Built with
``--threads`` threads, saved, then served by a fresh worker process. The peer: faiss
``IndexHNSWFlat`` (M 32, efConstruction 80, the settings of ``benchmarks/recall.py``) built the
same way on the first ``peer_n`` rows, saved, served by its own worker.

Each worker measures, with ONE search thread and one query per call: recall@10 and single-query
QPS (1 / median latency: on a shared machine a loop total measures the other jobs; the mean and
p99 are reported too) over a grid (nprobe x shortlist for ours, efSearch for HNSW), and picks
the fastest point with recall@10 >= 0.95. ``qps_2workers`` is two threads issuing single
queries at once (faiss releases the GIL), i.e. what 2 cores serve.

RAM per item is the growth of the worker's anonymous resident memory (``RssAnon`` in
/proc/self/status) from just before ``load`` to after the whole sweep, divided by the items.
Anonymous memory is what the index costs; the memory-mapped vectors show up as ``RssFile``
(clean page-cache pages the kernel can drop and re-read: reported apart as
``rss_file_bytes_per_item``, as is ``vectors_bytes_on_disk``). The vector file is warm in the
page cache here (just written or read); a cold disk adds one random read per re-ranked row.

    python benchmarks/scale_index.py --quick --json /tmp/scale_quick.json   # 1M vs HNSW 200k
    python benchmarks/scale_index.py --json /tmp/scale_10m.json             # 10M vs HNSW 1M
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import faiss
import numpy as np

HERE = Path(__file__).resolve()
D, CENTRES, NOISE, CHUNK = 64, 10_000, 0.35, 250_000
K, TARGET = 10, 0.95
NPROBES = (8, 16, 32, 64)
SHORTLISTS = (50, 100, 200, 400, 800, 1600)
EFS = (16, 32, 64, 128, 256, 512)
HNSW_M, HNSW_EFC = 32, 80


# ---- data -----------------------------------------------------------------------------------
def _centres(seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 0]).normal(size=(CENTRES, D)).astype(np.float32)


def _sample(rng: np.random.Generator, centres: np.ndarray, m: int) -> np.ndarray:
    x = centres[rng.integers(0, CENTRES, m)]
    x += NOISE * rng.standard_normal((m, D), dtype=np.float32)
    faiss.normalize_L2(x)
    return x


def vectors_file(n: int, seed: int, cache: Path) -> Path:
    """n x D float32 mixture rows as .npy, chunk j from generator (seed, 1, j); cached."""
    path = cache / f"vectors_n{n}_d{D}_c{CENTRES}_s{seed}.npy"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.npy")
    t0 = time.perf_counter()
    centres = _centres(seed)
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, D))
    for j, lo in enumerate(range(0, n, CHUNK)):
        m = min(CHUNK, n - lo)
        # always draw a whole chunk: a shorter file is then an exact prefix of a longer one
        out[lo : lo + m] = _sample(np.random.default_rng([seed, 1, j]), centres, CHUNK)[:m]
    out.flush()
    del out
    os.replace(tmp, path)
    print(f"  generated {n:,} x {D} in {time.perf_counter() - t0:.1f}s -> {path}")
    return path


def queries_file(n_queries: int, seed: int, cache: Path) -> Path:
    path = cache / f"queries_q{n_queries}_d{D}_c{CENTRES}_s{seed}.npy"
    if not path.exists():
        np.save(path, _sample(np.random.default_rng([seed, 2]), _centres(seed), n_queries))
    return path


def truth_file(vectors: Path, n: int, queries: Path, cache: Path) -> Path:
    """Exact top-K rows among the first n rows (faiss brute force, 1M-row chunks); cached."""
    path = cache / f"truth_{vectors.stem}_first{n}_{queries.stem}.npy"
    if path.exists():
        return path
    t0 = time.perf_counter()
    x = np.load(vectors, mmap_mode="r")
    q = np.load(queries)
    best_s = np.full((len(q), K), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), K), -1, dtype=np.int64)
    for lo in range(0, n, 1_000_000):
        chunk = np.ascontiguousarray(x[lo : min(n, lo + 1_000_000)])
        s, i = faiss.knn(q, chunk, K, metric=faiss.METRIC_INNER_PRODUCT)
        all_s, all_i = np.hstack([best_s, s]), np.hstack([best_i, i + lo])
        top = np.argsort(-all_s, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
    np.save(path, best_i)
    print(f"  exact top-{K} of {len(q)} queries over {n:,} rows in "
          f"{time.perf_counter() - t0:.1f}s")
    return path


# ---- measuring (in a worker process) --------------------------------------------------------
class Served(TypedDict):
    """What a worker reports: the grid, the chosen point and the memory it took."""

    kind: str
    n_items: int
    load_s: float
    table: list[dict[str, float]]
    best: dict[str, float]
    ram_bytes_per_item: float
    rss_file_bytes_per_item: float
    load_avg_1m: float


def _rss() -> dict[str, int]:
    """Anonymous and file-backed resident bytes of this process (/proc/self/status)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) * 1024
    return out


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def _single(
    search: Callable[[np.ndarray], np.ndarray], q: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """One query per call: the rows found and latency statistics."""
    found = np.full((len(q), K), -1, dtype=np.int64)
    times = np.empty(len(q))
    for i in range(len(q)):
        t0 = time.perf_counter()
        ids = search(q[i])
        times[i] = time.perf_counter() - t0
        found[i, : len(ids)] = ids
    return found, {"qps_single": 1.0 / float(np.median(times)),
                   "qps_single_mean": len(q) / float(times.sum()),
                   "latency_p50_ms": float(np.median(times)) * 1e3,
                   "latency_p99_ms": float(np.quantile(times, 0.99)) * 1e3}


def _two_workers(search: Callable[[np.ndarray], np.ndarray], q: np.ndarray) -> float:
    """QPS of two threads each issuing single queries (half the set each), best of 3."""
    best = float("inf")
    for _ in range(3):
        threads = [threading.Thread(target=lambda h=h: [search(v) for v in q[h::2]])
                   for h in range(2)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return len(q) / best


def work(kind: str, index_dir: Path, queries: Path, truth: Path) -> Served:
    """Load one index in this fresh process, sweep its grid, report the chosen point and RAM."""
    from funnel.recall.disk_index import DiskIVFPQIndex

    faiss.omp_set_num_threads(1)
    q, gt = np.load(queries), np.load(truth)
    before = _rss()
    t0 = time.perf_counter()
    if kind == "ours":
        ours = DiskIVFPQIndex.load(index_dir)
        n = len(ours)
        grid: list[dict[str, int]] = [{"nprobe": p, "shortlist": r}
                                      for p in NPROBES for r in SHORTLISTS]

        def configure(point: dict[str, int]) -> Callable[[np.ndarray], np.ndarray]:
            ours.nprobe, ours.shortlist = point["nprobe"], point["shortlist"]
            return lambda v: ours.search(v, K).ids
    else:
        hnsw = faiss.read_index(str(index_dir / "hnsw.faiss"))
        assert isinstance(hnsw, faiss.IndexHNSWFlat)
        n = int(hnsw.ntotal)
        grid = [{"ef": ef} for ef in EFS]

        def configure(point: dict[str, int]) -> Callable[[np.ndarray], np.ndarray]:
            hnsw.hnsw.efSearch = point["ef"]
            return lambda v: hnsw.search(v[None, :], K)[1][0]
    load_s = time.perf_counter() - t0
    widest = configure(grid[-1])
    for v in q:  # warm-up at the widest point: page in the codes / graph and the file rows
        widest(v)
    table: list[dict[str, float]] = []
    for point in grid:
        found, stats = _single(configure(point), q)
        table.append({**point, "recall10": _recall(found, gt), **stats})
    ok = [row for row in table if row["recall10"] >= TARGET]
    best = dict(max(ok, key=lambda r: r["qps_single"]) if ok
                else max(table, key=lambda r: r["recall10"]))
    best["qps_2workers"] = _two_workers(configure({k: int(v) for k, v in best.items()}), q)
    after = _rss()
    return {
        "kind": kind, "n_items": n, "load_s": load_s, "table": table, "best": best,
        "ram_bytes_per_item": (after["RssAnon"] - before["RssAnon"]) / n,
        "rss_file_bytes_per_item": (after["RssFile"] - before["RssFile"]) / n,
        "load_avg_1m": os.getloadavg()[0],
    }


def run_worker(kind: str, index_dir: Path, queries: Path, truth: Path) -> Served:
    cmd = [sys.executable, str(HERE), "--worker", kind, "--index", str(index_dir),
           "--queries", str(queries), "--truth", str(truth)]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    served: Served = json.loads(res.stdout.strip().splitlines()[-1])
    return served


# ---- building (in the parent) ---------------------------------------------------------------
def build_ours(vectors: Path, cache: Path, reuse: bool) -> tuple[Path, float, dict[str, int]]:
    """Fit and save ours; with ``reuse`` an index saved by an earlier run (and its build
    seconds) is taken as is, to re-run only the serving sweep."""
    from funnel.recall.disk_index import DiskIVFPQIndex

    out = cache / f"ivfpq_{vectors.stem}"
    if reuse and (out / "build.json").exists():
        saved = json.loads((out / "build.json").read_text())
        return out, float(saved.pop("build_s")), saved
    t0 = time.perf_counter()
    index = DiskIVFPQIndex().fit(vectors)
    build_s = time.perf_counter() - t0
    index.save(out)
    info = {"nlist": index.nlist_, "pq_m": index.pq_m_,
            "index_bytes": int((out / "ivf.faiss").stat().st_size)}
    (out / "build.json").write_text(json.dumps({"build_s": build_s, **info}))
    return out, build_s, info


def build_hnsw(vectors: Path, n: int, cache: Path) -> tuple[Path, float]:
    x = np.ascontiguousarray(np.load(vectors, mmap_mode="r")[:n])
    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(D, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EFC
    index.add(x)
    build_s = time.perf_counter() - t0
    out = cache / f"hnsw_first{n}_{vectors.stem}"
    out.mkdir(exist_ok=True)
    faiss.write_index(index, str(out / "hnsw.faiss"))
    return out, build_s


def _print_table(res: Served, cols: tuple[str, ...]) -> None:
    print("  " + "  ".join(f"{c:>9}" for c in (*cols, "recall@10", "QPS", "p99 ms")))
    for row in res["table"]:
        vals = [f"{int(row[c]):>9}" for c in cols]
        print("  " + "  ".join(vals) + f"  {row['recall10']:>9.3f}  {row['qps_single']:>9,.0f}"
              f"  {row['latency_p99_ms']:>9.2f}")


SAME_N_KEYS = ("recall10", "qps_single", "latency_p99_ms", "nprobe", "shortlist", "build_s",
               "ram_bytes_per_item")


def measure_ours(
    vecs: Path, qpath: Path, truth: Path, cache: Path, reuse: bool
) -> dict[str, float]:
    """Build ours on ``vecs`` here, serve and sweep it in a fresh process; flat figures."""
    n = int(np.load(vecs, mmap_mode="r").shape[0])
    idx_dir, build_s, info = build_ours(vecs, cache, reuse)
    print(f"  ours at {n:,} built in {build_s:.1f}s (nlist {info['nlist']}, PQ {info['pq_m']}x4 "
          f"bit), native index file {info['index_bytes'] / n:.1f} B/item; serving in a fresh "
          f"process")
    served = run_worker("ours", idx_dir, qpath, truth)
    _print_table(served, ("nprobe", "shortlist"))
    best = served["best"]
    out = {
        "build_s": build_s, "nlist": info["nlist"], "pq_m": info["pq_m"],
        "index_bytes_per_item": info["index_bytes"] / n,
        "recall10": best["recall10"], "qps_single": best["qps_single"],
        "qps_single_mean": best["qps_single_mean"], "qps_2workers": best["qps_2workers"],
        "latency_p50_ms": best["latency_p50_ms"], "latency_p99_ms": best["latency_p99_ms"],
        "nprobe": best["nprobe"], "shortlist": best["shortlist"], "load_s": served["load_s"],
        "ram_bytes_per_item": served["ram_bytes_per_item"],
        "rss_file_bytes_per_item": served["rss_file_bytes_per_item"],
        "load_avg_1m_ours": served["load_avg_1m"],
    }
    print(f"  ours at {n:,}: nprobe {best['nprobe']:.0f} shortlist {best['shortlist']:.0f}: "
          f"recall@10 {best['recall10']:.3f}, QPS single {best['qps_single']:,.0f} (2 workers "
          f"{best['qps_2workers']:,.0f}), p99 {best['latency_p99_ms']:.2f} ms, RAM "
          f"{out['ram_bytes_per_item']:.1f} B/item (+ {out['rss_file_bytes_per_item']:.1f} "
          f"B/item of mapped vector pages)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M items vs HNSW 200k, not 10M vs 1M")
    ap.add_argument("--n", type=int, default=None, help="override the number of items")
    ap.add_argument("--peer-n", type=int, default=None, help="override the HNSW peer's size")
    ap.add_argument("--queries-n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2, help="build threads (search: 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "scale_index_cache")
    ap.add_argument("--json", type=Path, default=None, help="write the flat results here")
    ap.add_argument("--reuse-index", action="store_true",
                    help="serve ours from an index a previous run saved in --cache (no build)")
    ap.add_argument("--worker", choices=["ours", "hnsw"], help=argparse.SUPPRESS)
    ap.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--queries", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--truth", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(work(a.worker, a.index, a.queries, a.truth)))
        return
    n = a.n or (1_000_000 if a.quick else 10_000_000)
    peer_n = min(n, a.peer_n or (200_000 if a.quick else 1_000_000))
    a.cache.mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(a.threads)
    print(f"scale_index: {n:,} x {D} mixture ({CENTRES:,} centres, noise {NOISE}), "
          f"{a.queries_n} queries, peer HNSW at {peer_n:,}; build threads {a.threads}, "
          f"search 1 thread; nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    vecs = vectors_file(n, a.seed, a.cache)
    qpath = queries_file(a.queries_n, a.seed, a.cache)
    truth = truth_file(vecs, n, qpath, a.cache)
    peer_truth = truth_file(vecs, peer_n, qpath, a.cache)

    out: dict[str, float] = {
        "n_items": n, "d": D, "n_centres": CENTRES, "n_queries": a.queries_n,
        "build_threads": a.threads, "nproc": os.cpu_count() or 0,
        "vectors_bytes_on_disk": int(vecs.stat().st_size),
        "load_avg_1m_start": os.getloadavg()[0],
    }
    ours = measure_ours(vecs, qpath, truth, a.cache, a.reuse_index)
    out.update(ours)
    peer_vecs = vectors_file(peer_n, a.seed, a.cache)  # the same rows as vecs[:peer_n]
    if peer_n < n:  # ours on the peer's very rows: the same-size comparison
        same = measure_ours(peer_vecs, qpath, peer_truth, a.cache, a.reuse_index)
        out.update({f"same_n_{k}": v for k, v in same.items() if k in SAME_N_KEYS})
    build_s = ours["build_s"]

    peer_dir, peer_build_s = build_hnsw(peer_vecs, peer_n, a.cache)
    print(f"  HNSW built in {peer_build_s:.1f}s; serving in a fresh process")
    peer = run_worker("hnsw", peer_dir, qpath, peer_truth)
    _print_table(peer, ("ef",))
    pb = peer["best"]
    out.update(
        peer_n_items=peer_n, peer_recall10=pb["recall10"], peer_qps_single=pb["qps_single"],
        peer_qps_2workers=pb["qps_2workers"], peer_latency_p99_ms=pb["latency_p99_ms"],
        peer_ef_search=pb["ef"], peer_build_s=peer_build_s,
        peer_ram_bytes_per_item=peer["ram_bytes_per_item"], load_avg_1m_peer=peer["load_avg_1m"],
    )
    print(f"  HNSW: ef {pb['ef']}: recall@10 {pb['recall10']:.3f}, QPS single "
          f"{pb['qps_single']:,.0f}, RAM {out['peer_ram_bytes_per_item']:.1f} B/item")

    out["ratio_qps_single"] = out["qps_single"] / out["peer_qps_single"]
    out["ratio_ram_per_item"] = out["ram_bytes_per_item"] / out["peer_ram_bytes_per_item"]
    out["ratio_build_s_per_item"] = (build_s / n) / (peer_build_s / peer_n)
    if "same_n_qps_single" in out:
        out["ratio_qps_single_same_n"] = out["same_n_qps_single"] / out["peer_qps_single"]
        out["ratio_ram_per_item_same_n"] = (
            out["same_n_ram_bytes_per_item"] / out["peer_ram_bytes_per_item"])
    out["ratio_n_items"] = n / peer_n
    out["meets_recall_qps_bar"] = int(out["recall10"] >= TARGET and out["qps_single"] >= 500)
    out["meets_ram_bar"] = int(out["ram_bytes_per_item"] < 64)
    out["load_avg_1m_end"] = os.getloadavg()[0]
    print("ratios (ours / HNSW):")
    for key in [k for k in out if k.startswith("ratio_")]:
        print(f"  {key:<24} {out[key]:.3f}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2, sort_keys=True))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
