"""Lexical recall benchmark: our LexicalIndex vs tantivy and bm25s on the same corpora and queries.

0. Latency at 1,000,000 items (issue #9's serving budget): the catalog of the built serving
   workspace (``--workspace``, default /tmp/s2/bench1m, opened read-only, never modified) and
   the serving benchmark's own queries (``benchmarks/serve.py::sample_queries``), k = 300, one
   query per call on one thread. Ours vs tantivy running the very same query (same analysed
   text, field boosts and fuzzy terms; the market clause as a pure filter): build seconds,
   p50/p99 latency, and agreement (same top-k up to exact score ties, scores within 1e-4).
1. The synthetic marketplace catalog: each search event's relevant items are the items matching
   the generator's true intent (``truth.intent_category/brand/market``). Queries are split into
   English, Chinese as generated, and Chinese with the spaces removed (how people type it).
2. MovieLens-100K titles, known-item search: the query is two title words (and a one-typo
   variant); the one relevant item is that movie.

tantivy runs the same queries as ours (the engine LexicalIndex used until format 2). bm25s runs
twice: with its own default tokenizer (regex words, English stopwords) and with our
analyzer's tokens (CJK unigrams + bigrams), so the ranking function and the tokenization can be
told apart. Metrics: NDCG@10 (binary relevance), queries/sec (one query per call; bm25s also
batched), index build seconds.

    python benchmarks/lexical.py --quick --json /tmp/lexical.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import bm25s
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.paths import shared_data_dir
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.recall._bm25_tantivy import TantivyBM25
from funnel.recall.lexical import FIELDS, LexicalIndex
from funnel.recall.text import analyze

K = 10
_CJK = re.compile(r"[\u3400-\u9fff]")


def ndcg_at_k(ranked: Sequence[str], relevant: set[str], k: int = K) -> float:
    dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def synthetic_task(n_events: int, seed: int) -> tuple[pa.Table, dict[str, list[tuple[str, set]]]]:
    tables = generate_tables(MarketplaceConfig(n_events=n_events, seed=seed))
    items, events, truth = tables["items"], tables["events"], tables["truth"]
    searches = events.filter(pc.equal(events.column("event_type"), "search"))
    intent = {
        r["event_id"]: r for r in truth.select(
            ["event_id", "intent_category", "intent_brand", "intent_market"]
        ).to_pylist()
    }
    cat = items.column("category").to_pylist()
    brand = items.column("brand").to_pylist()
    market = items.column("market").to_pylist()
    ids = items.column("item_id").to_pylist()
    seen: set[tuple] = set()
    tasks: dict[str, list[tuple[str, set]]] = {"en": [], "zh": [], "zh_nospace": []}
    for eid, query in zip(searches.column("event_id").to_pylist(),
                          searches.column("query").to_pylist(), strict=True):
        t = intent.get(eid)
        if not query or t is None:
            continue
        key = (query, t["intent_category"], t["intent_brand"], t["intent_market"])
        if key in seen:
            continue
        seen.add(key)
        rel = {
            ids[i] for i in range(len(ids))
            if (t["intent_category"] is None or cat[i] == t["intent_category"])
            and (t["intent_brand"] is None or brand[i] == t["intent_brand"])
            and (t["intent_market"] is None or market[i] == t["intent_market"])
        }
        if not rel:
            continue
        if _CJK.search(query):
            tasks["zh"].append((query, rel))
            tasks["zh_nospace"].append((query.replace(" ", ""), rel))
        else:
            tasks["en"].append((query, rel))
    return items, tasks


def movielens_task(path: Path, seed: int) -> tuple[pa.Table, dict[str, list[tuple[str, set]]]]:
    rng = np.random.default_rng(seed)
    ids, titles, genres = [], [], []
    with open(path, encoding="latin-1") as fh:
        next(fh)  # typed header
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            ids.append(parts[0])
            titles.append(parts[1])
            genres.append(parts[3] if len(parts) > 3 else "")
    items = pa.table({"item_id": ids, "title": titles, "brand": [""] * len(ids),
                      "category": genres, "market": [""] * len(ids)})
    tasks: dict[str, list[tuple[str, set]]] = {"en": [], "en_typo": []}
    stop = {"the", "a", "an", "of", "and", "in", "to", "on", "for", "de", "la", "le"}
    for item, title in zip(ids, titles, strict=True):
        words = [w for w in re.findall(r"[A-Za-z]{3,}", title) if w.lower() not in stop]
        if len(words) < 2:
            continue
        pick = sorted(rng.choice(len(words), size=2, replace=False))
        query = f"{words[pick[0]]} {words[pick[1]]}"
        tasks["en"].append((query, {item}))
        longest = max(words, key=len)
        if len(longest) >= 5:  # one adjacent transposition in the longest word
            j = int(rng.integers(1, len(longest) - 2))
            typo = longest[:j] + longest[j + 1] + longest[j] + longest[j + 2 :]
            tasks["en_typo"].append((typo, {item}))
    return items, tasks


def corpus_texts(items: pa.Table) -> list[str]:
    cols = [items.column(c).to_pylist() for c in ("title", "brand", "category")]
    return [" ".join(v or "" for v in row) for row in zip(*cols, strict=True)]


def run_ours(items: pa.Table, tasks: dict) -> dict[str, float]:
    t0 = time.perf_counter()
    index = LexicalIndex().fit(items)
    out = {"build_s": time.perf_counter() - t0}
    for lang, qs in tasks.items():
        t0 = time.perf_counter()
        ranked = [index.search(q, k=K).item_ids.tolist() for q, _ in qs]
        out[f"qps_{lang}"] = len(qs) / (time.perf_counter() - t0)
        out[f"ndcg10_{lang}"] = float(np.mean([
            ndcg_at_k(r, rel) for r, (_, rel) in zip(ranked, qs, strict=True)
        ]))
    return out


def build_tantivy(items: pa.Table) -> TantivyBM25:
    """Analyse (the same Python analysis as ours) and index: the old ``LexicalIndex.fit``."""
    analysed = {f: [" ".join(analyze(v)) for v in items.column(f).to_pylist()] for f in FIELDS}
    return TantivyBM25.build(analysed, items.column("market").to_pylist())


def tantivy_search(ref: TantivyBM25, parser: LexicalIndex, text: str, k: int,
                   ) -> tuple[np.ndarray, np.ndarray]:
    tokens, fuzzy = parser._parse(text)
    return ref.search(tokens, fuzzy, parser.field_boosts, parser.fuzzy_weight, k, None)


def run_tantivy(items: pa.Table, tasks: dict) -> dict[str, float]:
    t0 = time.perf_counter()
    ref = build_tantivy(items)
    out = {"build_s": time.perf_counter() - t0}
    parser = LexicalIndex()
    ids = np.array(items.column("item_id").to_pylist(), dtype=object)
    for lang, qs in tasks.items():
        t0 = time.perf_counter()
        ranked = [ids[tantivy_search(ref, parser, q, K)[0]].tolist() for q, _ in qs]
        out[f"qps_{lang}"] = len(qs) / (time.perf_counter() - t0)
        out[f"ndcg10_{lang}"] = float(np.mean([
            ndcg_at_k(r, rel) for r, (_, rel) in zip(ranked, qs, strict=True)
        ]))
    return out


def same_topk(rows: np.ndarray, scores: np.ndarray, ref_rows: np.ndarray,
              ref_scores: np.ndarray) -> tuple[bool, float]:
    """(same hits up to ties with the k-th score, largest relative score difference)."""
    if len(rows) != len(ref_rows):
        return False, float("inf")
    if not len(rows):
        return True, 0.0
    diff = float(np.max(np.abs(scores - ref_scores) / np.maximum(np.abs(ref_scores), 1e-9)))
    band = float(ref_scores[-1]) * (1 + 1e-4)
    same = set(rows[scores > band].tolist()) == set(ref_rows[ref_scores > band].tolist())
    return same and diff <= 1e-4, diff


def latency_1m(ws_root: Path, n_queries: int, k: int = 300) -> dict[str, float]:
    """Build both engines on the serving workspace's catalog and time k=300 searches."""
    import duckdb

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serve import sample_queries

    con = duckdb.connect(str(ws_root / "store.duckdb"), read_only=True)
    items = con.sql("SELECT item_id, title, brand, category, market FROM items").to_arrow_table()
    con.close()
    queries = sample_queries(ws_root)[:n_queries]
    print(f"\n1M latency: {items.num_rows:,} items from {ws_root}, {len(queries)} queries, k={k}")
    out: dict[str, float] = {"lat_n_items": float(items.num_rows),
                             "lat_n_queries": float(len(queries)), "lat_k": float(k)}
    t0 = time.perf_counter()
    ours = LexicalIndex().fit(items)
    out["lat_ours_build_s"] = time.perf_counter() - t0
    p = ours.index_.postings
    out["lat_ours_index_mb"] = (p.docs.nbytes + p.impacts.nbytes + p.masks.nbytes
                                + p.offsets.nbytes) / 1e6
    print(f"  ours built in {out['lat_ours_build_s']:.1f} s ({out['lat_ours_index_mb']:.0f} MB)",
          flush=True)
    t0 = time.perf_counter()
    ref = build_tantivy(items)
    out["lat_tantivy_build_s"] = time.perf_counter() - t0
    print(f"  tantivy built in {out['lat_tantivy_build_s']:.1f} s", flush=True)
    for q in queries[:20]:  # warm-up: numba dispatch, fuzzy expansion cache, page cache
        ours.search(q, k=k)
        tantivy_search(ref, ours, q, k)
    results: dict[str, list] = {"ours": [], "tantivy": []}
    times: dict[str, list[float]] = {"ours": [], "tantivy": []}
    cpu: dict[str, list[float]] = {"ours": [], "tantivy": []}
    row_of = {i: r for r, i in enumerate(ours.ids_.tolist())}
    for q in queries:  # alternate the two engines query by query: same machine load for both
        t0, c0 = time.perf_counter(), time.thread_time()
        got = ours.search(q, k=k)
        times["ours"].append((time.perf_counter() - t0) * 1e3)
        cpu["ours"].append((time.thread_time() - c0) * 1e3)
        rows = np.array([row_of[i] for i in got.item_ids.tolist()], dtype=np.int64)
        results["ours"].append((rows, got.scores))
        t0, c0 = time.perf_counter(), time.thread_time()
        results["tantivy"].append(tantivy_search(ref, ours, q, k))
        times["tantivy"].append((time.perf_counter() - t0) * 1e3)
        cpu["tantivy"].append((time.thread_time() - c0) * 1e3)
    agree = [same_topk(*a, *b) for a, b in zip(results["ours"], results["tantivy"], strict=True)]
    out["lat_topk_agreement"] = float(np.mean([a for a, _ in agree]))
    out["lat_max_rel_score_diff"] = float(max(d for _, d in agree))
    for name in ("ours", "tantivy"):
        t = np.array(times[name])
        out[f"lat_{name}_p50_ms"] = float(np.percentile(t, 50))
        out[f"lat_{name}_p99_ms"] = float(np.percentile(t, 99))
        out[f"lat_{name}_mean_ms"] = float(t.mean())
        out[f"lat_{name}_cpu_p50_ms"] = float(np.percentile(cpu[name], 50))
    out["lat_p50_speedup"] = out["lat_tantivy_p50_ms"] / out["lat_ours_p50_ms"]
    out["lat_p99_speedup"] = out["lat_tantivy_p99_ms"] / out["lat_ours_p99_ms"]
    out["lat_build_ratio"] = out["lat_ours_build_s"] / out["lat_tantivy_build_s"]
    print(f"  {'':<9}{'build s':>9}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'cpu p50':>9}")
    for name in ("ours", "tantivy"):
        print(f"  {name:<9}" + "".join(f"{out[f'lat_{name}_{m}']:>9.2f}" for m in (
            "build_s", "p50_ms", "p99_ms", "mean_ms", "cpu_p50_ms")))
    print(f"  speed-up tantivy / ours: p50 {out['lat_p50_speedup']:.2f}x, p99 "
          f"{out['lat_p99_speedup']:.2f}x; build ours / tantivy {out['lat_build_ratio']:.2f}; "
          f"same top-{k} (up to ties) on {out['lat_topk_agreement']:.1%} of queries, "
          f"max relative score difference {out['lat_max_rel_score_diff']:.1e}")
    return out


def run_bm25s(items: pa.Table, tasks: dict, tokenize: Callable[[list[str]], list[list[str]]],
              ) -> dict[str, float]:
    ids = np.array(items.column("item_id").to_pylist(), dtype=object)
    t0 = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(tokenize(corpus_texts(items)), show_progress=False)
    out = {"build_s": time.perf_counter() - t0}
    vocab = retriever.vocab_dict if hasattr(retriever, "vocab_dict") else None
    for lang, qs in tasks.items():
        q_tokens = tokenize([q for q, _ in qs])
        if vocab is not None:  # bm25s refuses out-of-vocabulary tokens: drop them, as it would
            q_tokens = [[t for t in toks if t in vocab] for toks in q_tokens]
        ranked: list[list[str]] = []
        t0 = time.perf_counter()
        for toks in q_tokens:
            if not toks:
                ranked.append([])
                continue
            res, _ = retriever.retrieve([toks], k=min(K, len(ids)), show_progress=False)
            ranked.append(ids[res[0]].tolist())
        out[f"qps_{lang}"] = len(qs) / (time.perf_counter() - t0)
        nonempty = [t for t in q_tokens if t]
        if nonempty:
            t0 = time.perf_counter()
            retriever.retrieve(nonempty, k=min(K, len(ids)), show_progress=False)
            out[f"qps_batch_{lang}"] = len(nonempty) / (time.perf_counter() - t0)
        out[f"ndcg10_{lang}"] = float(np.mean([
            ndcg_at_k(r, rel) for r, (_, rel) in zip(ranked, qs, strict=True)
        ]))
    return out


def default_tokenize(texts: list[str]) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def our_tokenize(texts: list[str]) -> list[list[str]]:
    return [analyze(t) for t in texts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="200 latency queries and a smaller synthetic catalog")
    ap.add_argument("--json", type=str, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/s2/bench1m"),
                    help="built serving workspace whose catalog and queries time k=300 searches")
    args = ap.parse_args()
    out: dict[str, float] = {"nproc": float(os.cpu_count() or 0),
                             "load_avg_start": os.getloadavg()[0]}
    if (args.workspace / "store.duckdb").exists():
        out.update(latency_1m(args.workspace, 200 if args.quick else 500))
    else:
        print(f"serving workspace not found at {args.workspace}: 1M latency skipped "
              "(build one with `python benchmarks/serve.py --build-only --workspace DIR`)")
    datasets = [("synthetic", *synthetic_task(100_000 if args.quick else 1_000_000, args.seed))]
    ml = shared_data_dir() / "movielens-100k" / "ml-100k.item"
    if ml.exists():
        datasets.append(("movielens", *movielens_task(ml, args.seed)))
    else:
        print(f"MovieLens titles not found at {ml}: skipped")
    for name, items, tasks in datasets:
        sizes = ", ".join(f"{lang} {len(q)}" for lang, q in tasks.items())
        print(f"\n{name}: {items.num_rows:,} items; queries: {sizes}")
        results = {
            "ours": run_ours(items, tasks),
            "tantivy": run_tantivy(items, tasks),
            "bm25s": run_bm25s(items, tasks, default_tokenize),
            "bm25s_ourtok": run_bm25s(items, tasks, our_tokenize),
        }
        header = f"  {'':<14}{'build s':>9}" + "".join(
            f"{'ndcg ' + lang:>18}{'qps ' + lang:>16}" for lang in tasks
        )
        print(header)
        for system, res in results.items():
            row = f"  {system:<14}{res['build_s']:>9.2f}" + "".join(
                f"{res[f'ndcg10_{lang}']:>18.3f}{res[f'qps_{lang}']:>16,.0f}" for lang in tasks
            )
            print(row)
            for key, value in res.items():
                out[f"{name}_{system}_{key}"] = value
        for lang in tasks:
            ours, peer, tv = results["ours"], results["bm25s"], results["tantivy"]
            out[f"{name}_ndcg10_ratio_{lang}"] = ours[f"ndcg10_{lang}"] / max(
                peer[f"ndcg10_{lang}"], 1e-9
            )
            out[f"{name}_qps_ratio_{lang}"] = ours[f"qps_{lang}"] / peer[f"qps_{lang}"]
            out[f"{name}_qps_ratio_tantivy_{lang}"] = ours[f"qps_{lang}"] / tv[f"qps_{lang}"]
        out[f"{name}_n_items"] = float(items.num_rows)
        print("  ratios ours / bm25s: " + ", ".join(
            f"ndcg {lang} {out[f'{name}_ndcg10_ratio_{lang}']:.2f} "
            f"qps {lang} {out[f'{name}_qps_ratio_{lang}']:.2f}" for lang in tasks
        ))
        print("  qps ratios ours / tantivy: " + ", ".join(
            f"{lang} {out[f'{name}_qps_ratio_tantivy_{lang}']:.2f}" for lang in tasks
        ))
    out["load_avg_end"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, sort_keys=True)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
