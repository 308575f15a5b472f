"""Query auto-completion benchmark: our index vs a sorted-list/bisect scan and marisa-trie.

    python benchmarks/suggest.py [--quick] [--json PATH] [--queries FILE] [--n N]
    python benchmarks/suggest.py --trec05-log OUT   # adapter: TREC-05 completions -> query log

Synthetic mode builds N distinct queries (default 1,000,000; 2% Chinese) with Zipf
popularity and a category per query, and plants the personal signal: a held-out search comes
from a user whose recent categories include the query's with probability 0.7. With
``--queries`` (one raw query per line in log order, repeats = popularity) the first 90% build
the index and the last 10% are the held-out queries; there is no user context there.

Reported: build time, index memory, p50/p99 lookup latency (ours incl. personalization; the
headline ``p99_ms`` mixes exact and one-typo prefixes, ``TYPO_SHARE`` = 20% with a typo, and
``p99_exact_ms`` / ``p99_typo_ms`` split it), MRR / success@10 of the submitted query
over all its prefixes vs most-popular completion (MPC), and the share of one-typo prefixes
that still complete to the intended query.

``mrr_ours`` / ``success10_ours`` are the full completer's (``AutoCompleter``: exact index +
rare-prefix suffixes + context in the learned order; ``*_exact_index`` the index alone). With
``--queries`` it indexes the first 80% of the training lines and learns its order on the rest
(no user ids: no context); synthetic mode learns it on 3,000 searches drawn like the held-out
ones. ``p50/p99_complete_ms`` (``complete_cpu_*`` in CPU time) time that whole call,
``order_cpu_*`` the re-ranker's trees alone; ``complete_build_s``, ``complete_memory_mb``.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import marisa_trie
import numpy as np
import psutil

from funnel.suggest.autocomplete import AutoCompleter, IndexData, OrderExample
from funnel.suggest.candidates import gather
from funnel.suggest.completion import QueryCompleter
from funnel.suggest.context import SessionContext
from funnel.suggest.evaluate import MostPopularCompletion, completion_metrics
from funnel.suggest.normalize import normalize_query

ZH = list("北京上海广州深圳杭州成都酒店民宿公寓别墅海景度假村青年旅舍豪华便宜亲子温泉")
CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"


def _words(rng: np.random.Generator, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        k = int(rng.integers(1, 4))
        out.add("".join(rng.choice(list(CONSONANTS)) + rng.choice(list(VOWELS))
                        for _ in range(k)) + str(rng.choice(["", "n", "s", "r"])))
    return sorted(out)


def synth_queries(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """``n`` distinct queries, Zipf counts and a category each (the first word's category)."""
    rng = np.random.default_rng(seed)
    words = _words(rng, 4000)
    word_cat = rng.integers(0, 40, len(words))
    seen: dict[str, str] = {}
    while len(seen) < n:
        m = int((n - len(seen)) * 1.1) + 16
        lens = rng.integers(1, 5, m)
        idx = rng.integers(0, len(words), (m, 4))
        zh = rng.random(m) < 0.02
        zh_idx = rng.integers(0, len(ZH), (m, 5))
        zh_cat = rng.integers(0, 40, m)
        for i in range(m):
            if zh[i]:
                q = "".join(ZH[c] for c in zh_idx[i, : lens[i] + 1])
                cat = f"c{zh_cat[i]}"
            else:
                q = " ".join(words[w] for w in idx[i, : lens[i]])
                cat = f"c{word_cat[idx[i, 0]]}"
            seen.setdefault(q, cat)
    queries = list(seen)[:n]
    cats = [seen[q] for q in queries]
    ranks = rng.permutation(n) + 1
    counts = np.floor(1e6 / ranks ** 1.05).astype(np.float64) + 1.0
    return queries, counts, cats


class MarisaCompleter:
    """marisa-trie only: enumerate every key under the prefix, keep the top k by score."""

    def fit(self, queries: list[str], scores: np.ndarray) -> MarisaCompleter:
        self.trie = marisa_trie.Trie(queries)
        self.scores = np.empty(len(queries))
        for q, s in zip(queries, scores, strict=True):
            self.scores[self.trie[q]] = s
        return self

    def complete(self, prefix: str, k: int = 10) -> list[str]:
        items = self.trie.items(prefix)
        return [q for q, _ in heapq.nlargest(k, items, key=lambda kv: self.scores[kv[1]])]


def add_typo(q: str, rng: np.random.Generator) -> str:
    """One random edit (substitute, delete, insert, transpose) at position >= 1."""
    i = int(rng.integers(1, len(q) - 1))
    op = int(rng.integers(0, 4))
    c = str(rng.choice(list(VOWELS + CONSONANTS)))
    if op == 0:
        return q[:i] + c + q[i + 1 :]
    if op == 1:
        return q[:i] + q[i + 1 :]
    if op == 2:
        return q[:i] + c + q[i:]
    return q[:i] + q[i + 1] + q[i] + q[i + 2 :]


# Share of headline lookups typed with one typo: 1 in 5, above the 10-15% of web queries
# that are misspelled (Cucerzan & Brill 2004), so the typo path weighs on the p99.
TYPO_SHARE = 0.2


def mix_lookups(exact: list[str], exact_ctx: list[list[str]], typo: list[str],
                typo_ctx: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """Exact and one-typo prefixes shuffled together, ``TYPO_SHARE`` of them with a typo."""
    n_typo = min(len(typo), int(len(exact) * TYPO_SHARE / (1 - TYPO_SHARE)))
    n_exact = min(len(exact), round(n_typo * (1 - TYPO_SHARE) / TYPO_SHARE)) if n_typo else \
        len(exact)
    pairs = list(zip(exact[:n_exact], exact_ctx[:n_exact], strict=True))
    pairs += zip(typo[:n_typo], typo_ctx[:n_typo], strict=True)
    order = np.random.default_rng(2).permutation(len(pairs))  # own stream: quality's unchanged
    return [pairs[j][0] for j in order], [pairs[j][1] for j in order]


LAT: dict[str, float] = {}


def latency(fn, prefixes: list[str], name: str | None = None) -> tuple[float, float]:  # type: ignore[no-untyped-def]  # noqa: E501
    """Wall-clock p50/p99 in ms; CPU-time p50/p99 (no waiting for a core) go to ``LAT``.
    NaN without prefixes (a log with no query long enough for a typo)."""
    if not prefixes:
        if name is not None:
            LAT[f"{name}cpu_p50_ms"] = LAT[f"{name}cpu_p99_ms"] = float("nan")
        return float("nan"), float("nan")
    wall = np.empty(len(prefixes))
    cpu = np.empty(len(prefixes))
    for i, p in enumerate(prefixes):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn(p, i)
        wall[i] = time.perf_counter() - t0
        cpu[i] = time.thread_time() - c0
    if name is not None:
        LAT[f"{name}cpu_p50_ms"] = float(np.percentile(cpu, 50) * 1e3)
        LAT[f"{name}cpu_p99_ms"] = float(np.percentile(cpu, 99) * 1e3)
    return float(np.percentile(wall, 50) * 1e3), float(np.percentile(wall, 99) * 1e3)


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


_LOAD_SNIPPET = """
import gc, sys, psutil
from pathlib import Path
import numba, numpy
from funnel.suggest.completion import QueryCompleter
gc.collect(); r0 = psutil.Process().memory_info().rss
qc = QueryCompleter.load(Path(sys.argv[1])); qc.complete("ba", 10, categories=["c1"])
gc.collect(); print((psutil.Process().memory_info().rss - r0) / 2**20)
"""


def serving_mb(model: QueryCompleter) -> float:
    """RSS growth of a fresh process that loads the saved index and answers one lookup."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        out = subprocess.run([sys.executable, "-c", _LOAD_SNIPPET, tmp], check=True,
                             capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


_AUTO_SNIPPET = """
import gc, sys, psutil
from pathlib import Path
import numba, numpy, lightgbm
from funnel.suggest.autocomplete import AutoCompleter
gc.collect(); r0 = psutil.Process().memory_info().rss
ac = AutoCompleter.load(Path(sys.argv[1])); ac.complete("ba", 10); ac.complete("ba b", 10)
gc.collect(); print((psutil.Process().memory_info().rss - r0) / 2**20)
"""


def complete_mb(model: AutoCompleter) -> float:
    """RSS growth of a fresh process that loads the whole completer and answers lookups."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp))
        out = subprocess.run([sys.executable, "-c", _AUTO_SNIPPET, tmp], check=True,
                             capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def fit_learned(queries: list[str], counts: np.ndarray, cats: list[str] | None,
                lines: list[str] | None, rng: np.random.Generator) -> AutoCompleter:
    """The full completer (exact + rare-prefix + context, learned order). A log: index its
    first 80%, learn the order on the rest, index it all. Synthetic: index the queries, learn
    the order on searches drawn like the held-out ones (a planted category context each)."""
    if lines is not None:
        return AutoCompleter().fit(lines)
    data = IndexData(queries, counts, counts, np.ones(len(queries)), list(cats or []) or None,
                     None, queries, counts)
    auto = AutoCompleter().fit_index(data)
    picks = rng.choice(len(queries), 3000, p=counts / counts.sum())
    all_cats = sorted(set(cats or []))
    examples = []
    for i in picks.tolist():
        own = [cats[i]] if cats and rng.random() < 0.7 else []
        extra = list(rng.choice(all_cats, 3 - len(own), replace=False)) if all_cats else []
        examples.append(OrderExample(queries[i], SessionContext(categories=tuple(own + extra))))
    return auto.fit_order(examples)


def trec05_log(src: Path, out: Path, n_lines: int = 400_000, seed: int = 0) -> None:
    """Adapter: the TREC-05 completions file lists each query once (``id query``), so a log
    is sampled from it with Zipf(1.0) popularity over the id order (ids are not frequencies;
    treating them as a popularity rank is our assumption), in sampled order."""
    rows = [line.rstrip("\n").split(" ", 1) for line in src.open(encoding="utf-8")]
    rows = sorted((int(i), q) for i, q in rows if len(rows) and q.strip())
    queries = [q for _, q in rows]
    p = 1.0 / np.arange(1, len(queries) + 1)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(queries), n_lines, p=p / p.sum())
    out.write_text("".join(queries[i] + "\n" for i in picks), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer lookups and test queries")
    ap.add_argument("--json", type=Path, help="write the flat results object here")
    ap.add_argument("--queries", type=Path, help="raw query log, one per line, in log order")
    ap.add_argument("--n", type=int, default=1_000_000, help="distinct synthetic queries")
    ap.add_argument("--trec05-log", type=Path, help="write a log sampled from TREC-05 and exit")
    args = ap.parse_args()
    if args.trec05_log:
        from funnel.data.paths import shared_data_dir

        src = shared_data_dir() / "trec05-efficiency-queries-autocomplete" / \
            "trec_05_efficiency_queries.completions"
        if not src.exists():
            sys.exit(f"TREC-05 completions not found at {src}")
        trec05_log(src, args.trec05_log)
        print(f"wrote {args.trec05_log}")
        return
    n_lookup = 2000 if args.quick else 10000
    n_test = 300 if args.quick else 1500
    rng = np.random.default_rng(1)

    # ---- data -------------------------------------------------------------------------
    t0 = time.perf_counter()
    user_cats: list[list[str]] = []
    if args.queries:
        lines = [normalize_query(x) for x in args.queries.read_text(encoding="utf-8").splitlines()]
        lines = [x for x in lines if x]
        cut = int(len(lines) * 0.9)
        counts_c = Counter(lines[:cut])
        queries = list(counts_c)
        counts = np.asarray([counts_c[q] for q in queries], dtype=np.float64)
        cats: list[str] | None = None
        held = lines[cut:]
        tests = [held[i] for i in rng.choice(len(held), min(n_test, len(held)), replace=False)]
        user_cats = [[] for _ in tests]
        source = str(args.queries)
    else:
        queries, counts, cats = synth_queries(args.n)
        p = counts / counts.sum()
        picks = rng.choice(len(queries), n_test, p=p)
        tests = [queries[i] for i in picks]
        all_cats = sorted(set(cats))
        for i in picks:
            own = [cats[i]] if rng.random() < 0.7 else []
            user_cats.append(own + list(rng.choice(all_cats, 3 - len(own), replace=False)))
        source = f"synthetic ({len(queries):,} distinct, 2% Chinese)"
    print(f"data: {source}; {len(queries):,} queries in {time.perf_counter() - t0:.1f}s")

    # ---- ours -------------------------------------------------------------------------
    QueryCompleter().fit(["warm up numba"], [1.0]).complete("warm", 1)  # JIT, not build
    m0 = rss_mb()
    t0 = time.perf_counter()
    ours = QueryCompleter().fit(queries, counts, categories=cats)
    build_s = time.perf_counter() - t0
    ours_rss = rss_mb() - m0
    index_mb = ours.nbytes / 2**20
    memory_mb = serving_mb(ours)

    # ---- baselines --------------------------------------------------------------------
    m0 = rss_mb()
    t0 = time.perf_counter()
    naive = MostPopularCompletion().fit(queries, counts)
    naive_build = time.perf_counter() - t0
    naive_mb = rss_mb() - m0
    m0 = rss_mb()
    t0 = time.perf_counter()
    marisa = MarisaCompleter().fit(queries, counts)
    marisa_build = time.perf_counter() - t0
    marisa_mb = rss_mb() - m0

    # ---- latency ----------------------------------------------------------------------
    lk = rng.choice(len(tests), n_lookup)
    prefixes = [tests[i][: int(rng.integers(1, len(tests[i]) + 1))] for i in lk]
    ctx = [user_cats[i] for i in lk]
    long_ids = [i for i, t in enumerate(tests) if len(t) >= 8]
    typo_pfx = [add_typo(tests[i][:8], rng) for i in long_ids][: n_lookup // 4]
    typo_ctx = [user_cats[i] for i in long_ids[: len(typo_pfx)]]
    mixed, mixed_ctx = mix_lookups(prefixes, ctx, typo_pfx, typo_ctx)
    # the headline runs first, so it meets the index as cold as the split runs after it
    p50, p99 = latency(lambda p, i: ours.complete(p, 10, categories=mixed_ctx[i]), mixed, "")
    e50, e99 = latency(lambda p, i: ours.complete(p, 10, categories=ctx[i]), prefixes, "exact_")
    t50, t99 = latency(lambda p, i: ours.complete(p, 10, categories=typo_ctx[i]), typo_pfx,
                       "typo_")
    n50, n99 = latency(lambda p, i: naive.complete(p, 10), prefixes, "naive_")
    k50, k99 = latency(lambda p, i: marisa.complete(p, 10), prefixes, "marisa_")

    # ---- quality ----------------------------------------------------------------------
    m_ours = completion_metrics(
        lambda p, k, t: ours.complete(p, k, categories=user_cats[t], normalize=False)[0], tests)
    m_mpc = completion_metrics(lambda p, k, t: naive.complete(p, k), tests)
    m_exact = m_ours  # the exact index alone (MPC order + personalization), kept for reference
    t0 = time.perf_counter()
    auto = fit_learned(queries, counts, cats, lines[:cut] if args.queries else None,
                       np.random.default_rng(7))
    auto_build_s = time.perf_counter() - t0

    def _ctx(i: int) -> SessionContext:
        return SessionContext(categories=tuple(user_cats[i]))

    m_ours = completion_metrics(
        lambda p, k, t: auto.complete(p, k, context=_ctx(t), normalize=False)[0], tests)
    f50, f99 = latency(lambda p, i: auto.complete(p, 10, context=SessionContext(
        categories=tuple(mixed_ctx[i]))), mixed, "complete_")
    order = auto.order_
    if order is not None:  # the re-ranker's own cost: numba trees over one request's rows
        rows = [gather(auto.sources_, normalize_query(p, keep_trailing_space=True),
                       SessionContext(), 16)[1] for p in mixed[:2000]]
        o50, o99 = latency(lambda p, i: order.predict(rows[i]), mixed[:2000], "order_")
        LAT["order_rows_mean"] = float(np.mean([len(r) for r in rows]))
    long_tests = [t for t in tests if len(t) >= 8]
    typo_in = [(add_typo(t[:8], rng), t) for t in long_tests]
    typo_ours = float(np.mean([t in ours.complete(p, 10)[0] for p, t in typo_in] or [0]))
    typo_mpc = float(np.mean([t in naive.complete(p, 10) for p, t in typo_in] or [0]))

    res = {
        "n_queries": len(queries),
        "build_s": build_s,
        "memory_mb": memory_mb,
        "index_mb": index_mb,
        "build_rss_delta_mb": ours_rss,
        "p50_ms": p50,
        "p99_ms": p99,
        "typo_share": TYPO_SHARE,
        "p50_exact_ms": e50,
        "p99_exact_ms": e99,
        "p99_typo_ms": t99,
        "typo_p50_ms": t50,
        "typo_p99_ms": t99,
        "naive_build_s": naive_build,
        "naive_rss_delta_mb": naive_mb,
        "naive_p50_ms": n50,
        "naive_p99_ms": n99,
        "marisa_build_s": marisa_build,
        "marisa_rss_delta_mb": marisa_mb,
        "marisa_p50_ms": k50,
        "marisa_p99_ms": k99,
        "mrr_ours": m_ours["mrr"],
        "mrr_exact_index": m_exact["mrr"],
        "success10_exact_index": m_exact["success@10"],
        "p50_complete_ms": f50,
        "p99_complete_ms": f99,
        "complete_build_s": auto_build_s,
        "complete_memory_mb": complete_mb(auto),
        **getattr(auto, "order_info_", {}),
        "mrr_mpc": m_mpc["mrr"],
        "success10_ours": m_ours["success@10"],
        "success10_mpc": m_mpc["success@10"],
        "typo_recovery_ours": typo_ours,
        "typo_recovery_mpc": typo_mpc,
        "eval_prefixes": m_ours["pairs"],
        "nproc": os.cpu_count() or 0,
        "load_avg_1m": os.getloadavg()[0],
        **LAT,
    }
    print(f"{'':14}{'build s':>9}{'MB':>9}{'p50 ms':>9}{'p99 ms':>9}   (ours MB = serving RSS)")
    print(f"{'ours':14}{build_s:9.2f}{memory_mb:9.1f}{p50:9.4f}{p99:9.4f}"
          f"   (arrays {index_mb:.0f} MB, build RSS +{ours_rss:.0f} MB; {TYPO_SHARE:.0%} of"
          " lookups with one typo)")
    print(f"{'  exact only':14}{'':18}{e50:9.4f}{e99:9.4f}")
    print(f"{'  one typo':14}{'':18}{t50:9.4f}{t99:9.4f}   (CPU p50/p99 "
          f"{LAT['typo_cpu_p50_ms']:.4f}/{LAT['typo_cpu_p99_ms']:.4f})")
    print(f"{'sorted/bisect':14}{naive_build:9.2f}{naive_mb:9.1f}{n50:9.4f}{n99:9.4f}")
    print(f"{'marisa-trie':14}{marisa_build:9.2f}{marisa_mb:9.1f}{k50:9.4f}{k99:9.4f}")
    print(f"p99 ratio on exact prefixes: bisect/ours {n99 / e99:.1f}x, marisa/ours "
          f"{k99 / e99:.1f}x")
    print("CPU time per lookup (excludes waiting for a core; load avg "
          f"{res['load_avg_1m']:.1f} on {res['nproc']} cores): p50/p99 ms ours exact "
          f"{LAT['exact_cpu_p50_ms']:.4f}/{LAT['exact_cpu_p99_ms']:.4f}, bisect "
          f"{LAT['naive_cpu_p50_ms']:.4f}/"
          f"{LAT['naive_cpu_p99_ms']:.4f}, marisa {LAT['marisa_cpu_p50_ms']:.4f}/"
          f"{LAT['marisa_cpu_p99_ms']:.4f}")
    print(f"MRR ours {m_ours['mrr']:.4f} vs MPC {m_mpc['mrr']:.4f} "
          f"(ratio {m_ours['mrr'] / max(m_mpc['mrr'], 1e-9):.3f}); success@10 "
          f"{m_ours['success@10']:.4f} vs {m_mpc['success@10']:.4f}; one-typo recovery "
          f"{typo_ours:.3f} vs {typo_mpc:.3f}")
    print(f"  (exact index alone: MRR {m_exact['mrr']:.4f}, success@10 "
          f"{m_exact['success@10']:.4f}); whole complete() with rare prefixes + learned order: "
          f"p50 {f50:.3f} ms, p99 {f99:.3f} ms, build {auto_build_s:.1f} s, serving "
          f"{res['complete_memory_mb']:.0f} MB; re-ranker alone p99 "
          f"{LAT.get('order_cpu_p99_ms', float('nan')):.4f} ms CPU")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
