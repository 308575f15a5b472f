"""Item embeddings: our numba skip-gram (plain and Airbnb objective) vs gensim Word2Vec.

Same corpus (our filtered click sessions), same dimension, window, negatives, epochs,
subsampling and learning-rate schedule, 2 threads each. The numba kernel is compiled (or loaded
from cache) before any timing. Words/sec = corpus tokens x epochs / training wall time, for
both libraries. HR@10 / MRR: next click from the last clicked item on the held-out last 20% of
sessions. The Airbnb variant adds the booked item as global context and spends the same negative
budget as 3 global + 2 same-market negatives.

    python benchmarks/embeddings.py --quick
    python benchmarks/embeddings.py --json out.json
    python benchmarks/embeddings.py --sessions ../shared/data/diginetica-sample-srgnn/\
sample_train-item-views.csv --format diginetica
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa

from funnel.embed.corpus import Corpus, build_corpus
from funnel.embed.evaluate import (
    booked_rank_metrics,
    neighbour_cohesion,
    next_click_metrics,
    split_sessions,
)
from funnel.embed.simulate import SessionSimConfig, simulate_sessions
from funnel.embed.trainer import train_skipgram, warm_up


class PeakRss:
    """Sample this process's RSS every 5 ms while active (the peak during one training)."""

    def __init__(self) -> None:
        self.proc = psutil.Process(os.getpid())
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    with PeakRss() as mem:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    return out, seconds, mem.peak / 2**20


def real_sessions(path: Path, fmt: str) -> tuple[pa.Table, pa.Table | None]:
    """Run the real pipeline: ingest through the loaders, then 30-minute sessionization."""
    from funnel.data.ingest import ingest_file
    from funnel.embed.build import read_tables
    from funnel.pipeline.sessions import build_sessions
    from funnel.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        ingest_file(ws, path, fmt)
        con = ws.connect()
        try:
            build_sessions(con)
        finally:
            con.close()
        sessions, items = read_tables(ws)
    return sessions, (items if items.num_rows else None)


def marketplace_sessions(n_events: int) -> tuple[pa.Table, pa.Table]:
    """The full synthetic marketplace (funnel.data.synthetic), sessionized by the pipeline."""
    from funnel.data.synthetic import MarketplaceConfig, generate_tables
    from funnel.pipeline.sessions import sessionize

    tables = generate_tables(MarketplaceConfig(n_events=n_events, seed=0))
    return sessionize({name: tables[name] for name in ("items", "events")}), tables["items"]


def decode(corpus: Corpus) -> list[list[str]]:
    vocab = corpus.vocab
    return [[vocab[t] for t in corpus.tokens[a:b]]
            for a, b in zip(corpus.offsets[:-1], corpus.offsets[1:], strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small corpus, finishes in ~1 minute")
    ap.add_argument("--json", type=Path, help="write the flat results object here")
    ap.add_argument("--sessions", type=Path, help="a real session log (any 'funnel ingest' format)")
    ap.add_argument("--format", help="loader format name for --sessions, e.g. diginetica")
    ap.add_argument("--marketplace", type=int, metavar="EVENTS",
                    help="use funnel.data.synthetic with this many events instead of the "
                         "session simulator")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--negatives", type=int, default=5)
    ap.add_argument("--repeats", type=int, help="timed runs of each (best kept); 2 quick, 3 full")
    args = ap.parse_args()

    from gensim.models import Word2Vec

    args.repeats = args.repeats or (2 if args.quick else 3)

    if args.sessions:
        sessions, items = real_sessions(args.sessions, args.format)
        data_name = f"{args.sessions.name} ({args.format})"
        min_dwell = 0
    elif args.marketplace:
        sessions, items = marketplace_sessions(args.marketplace)
        data_name = f"synthetic marketplace, {args.marketplace:,} events"
        min_dwell = 2000
    else:
        n = 30_000 if args.quick else 300_000
        cfg = SessionSimConfig(n_sessions=n, n_markets=20, n_categories=10, items_per_cell=20,
                               seed=7)
        sessions, items = simulate_sessions(cfg)
        data_name = f"simulated marketplace, {n:,} sessions"
        min_dwell = 2000
    train, test = split_sessions(sessions, 0.2)
    markets = (dict(zip(items["item_id"].to_pylist(), items["market"].to_pylist(), strict=True))
               if items is not None else None)
    common = {"dim": args.dim, "window": args.window, "epochs": args.epochs,
              "learning_rate": 0.025, "min_learning_rate": 1e-4, "sample": 1e-3,
              "n_threads": args.threads, "seed": 1}
    plain_corpus = build_corpus(train, min_dwell_ms=0, use_booked=False)
    airbnb_corpus = build_corpus(train, min_dwell_ms=min_dwell, use_booked=True,
                                 item_markets=markets)
    words = plain_corpus.n_tokens * args.epochs
    print(f"data: {data_name}; train sessions {plain_corpus.n_sessions:,}, tokens "
          f"{plain_corpus.n_tokens:,}, items {len(plain_corpus.vocab):,}; dim {args.dim}, "
          f"window {args.window}, negatives {args.negatives}, epochs {args.epochs}, "
          f"threads {args.threads}, cpus {os.cpu_count()}")

    _, compile_s, _ = timed(warm_up)
    n_mkt = 2 if airbnb_corpus.markets and len(airbnb_corpus.markets) > 1 else 0
    air_words = airbnb_corpus.n_tokens * args.epochs
    sentences = decode(plain_corpus)

    def fresh_gensim() -> Word2Vec:
        model = Word2Vec(vector_size=args.dim, window=args.window, negative=args.negatives,
                         hs=0, sg=1, min_count=1, sample=1e-3, alpha=0.025, min_alpha=1e-4,
                         workers=args.threads, seed=1)
        model.build_vocab(sentences)  # vocabulary building is not timed, as ours
        return model

    # the machine is shared: interleave the three trainings and keep each one's best time
    t_plain = t_air = t_gensim = float("inf")
    rss_plain = rss_air = rss_gensim = 0.0
    for _ in range(args.repeats):
        (w_plain, _), t, rss = timed(lambda: train_skipgram(
            plain_corpus, negatives=args.negatives, market_negatives=0, use_booked=False,
            **common))
        t_plain, rss_plain = min(t_plain, t), max(rss_plain, rss)
        (w_air, _), t, rss = timed(lambda: train_skipgram(
            airbnb_corpus, negatives=args.negatives - n_mkt, market_negatives=n_mkt,
            use_booked=True, **common))
        t_air, rss_air = min(t_air, t), max(rss_air, rss)
        model = fresh_gensim()
        _, t, rss = timed(lambda m=model: m.train(
            sentences, total_examples=len(sentences), epochs=args.epochs))
        t_gensim, rss_gensim = min(t_gensim, t), max(rss_gensim, rss)

    def scores(ids: list[str], vectors: np.ndarray) -> dict[str, float]:
        out = next_click_metrics(ids, vectors, test)
        if markets is not None:
            out.update(booked_rank_metrics(ids, vectors, test, markets))
            out["cohesion"] = neighbour_cohesion(ids, vectors, markets)
        return out

    s_plain = scores(plain_corpus.vocab, w_plain)
    s_air = scores(airbnb_corpus.vocab, w_air)
    s_gen = scores(list(model.wv.index_to_key), model.wv.vectors)
    result = {
        "data": data_name,
        "words_per_sec_ours_plain": words / t_plain,
        "words_per_sec_ours_airbnb": air_words / t_air,
        "words_per_sec_gensim": words / t_gensim,
        "ratio_plain_vs_gensim": t_gensim / t_plain,
        "ratio_airbnb_vs_gensim": (air_words / t_air) / (words / t_gensim),
        "hr10_ours_plain": s_plain["hr@10"],
        "hr10_ours_airbnb": s_air["hr@10"],
        "hr10_gensim": s_gen["hr@10"],
        "mrr_ours_plain": s_plain["mrr"],
        "mrr_ours_airbnb": s_air["mrr"],
        "mrr_gensim": s_gen["mrr"],
        "peak_rss_mb_ours": max(rss_plain, rss_air),
        "peak_rss_mb_gensim": rss_gensim,
        "train_seconds_ours_plain": t_plain,
        "train_seconds_ours_airbnb": t_air,
        "train_seconds_gensim": t_gensim,
        "numba_warmup_seconds": compile_s,
        "test_sessions_scored": s_plain["n"],
        "repeats": args.repeats,
    }
    if markets is not None:
        for name, s in (("ours_plain", s_plain), ("ours_airbnb", s_air), ("gensim", s_gen)):
            result[f"booked_rank50_{name}"] = s["booked_mean_rank"]
            result[f"market_cohesion_{name}"] = s["cohesion"]
    print(f"{'':14s}{'words/s':>12s}{'ratio':>8s}{'HR@10':>8s}{'MRR':>8s}{'booked rank':>13s}")
    for label, key, ws, ratio in (
        ("ours plain", "ours_plain", words / t_plain, t_gensim / t_plain),
        ("ours airbnb", "ours_airbnb", air_words / t_air, result["ratio_airbnb_vs_gensim"]),
        ("gensim", "gensim", words / t_gensim, 1.0),
    ):
        br = result.get(f"booked_rank50_{key}", float("nan"))
        print(f"{label:14s}{ws:12,.0f}{ratio:8.2f}{result['hr10_' + key]:8.3f}"
              f"{result['mrr_' + key]:8.3f}{br:13.2f}")
    print(f"peak RSS MB: ours {result['peak_rss_mb_ours']:.0f}, gensim {rss_gensim:.0f}; "
          f"numba warm-up {compile_s:.1f}s (excluded)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
