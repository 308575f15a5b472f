"""Benchmark of the synthetic marketplace generator: speed, memory and ground-truth figures.

There is no peer library that generates this kind of data, so the figures are compared with the
targets of the issue instead (1M events < 60 s on 2 cores, 10M events < 2 GB RSS): the printed
ratios are measured / target (below 1 is within target).

    .venv/bin/python benchmarks/generate.py --quick            # 1M events
    .venv/bin/python benchmarks/generate.py --json out.json    # 10M events

JSON keys: events, seconds, cpu_seconds, events_per_second, peak_rss_mb, time_ratio_to_target,
rss_ratio_to_target, base_ctr, bayes_auc, bayes_logloss, auc_without_user, logloss_without_user.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from funnel.data.synthetic import MarketplaceConfig, bayes_metrics, generate
from funnel.data.synthetic._simulate import plan_sessions, simulate_chunk
from funnel.data.synthetic._world import build_world

SECONDS_PER_MILLION_TARGET = 60.0
RSS_TARGET_MB = 2048.0


def without_user(config: MarketplaceConfig) -> tuple[float, float]:
    """AUC/logloss on the first chunk of the true click model with every user-specific part
    replaced by the population mean: the best any model that ignores the user can do."""
    world = build_world(config)
    plan = plan_sessions(config, world)
    a, b = plan.chunks[0]
    users, sessions = np.arange(a, b), plan.sessions[a:b]
    true = simulate_chunk(config, world, users, sessions, 0)
    anon = dataclasses.replace(
        world,
        user_idio=np.zeros_like(world.user_idio),
        user_sens=np.full_like(world.user_sens, world.user_sens.mean()),
        user_budget=np.full_like(world.user_budget, world.user_budget.mean()),
    )
    blind = simulate_chunk(config, anon, users, sessions, 0)  # same draws, same impressions
    return bayes_metrics(blind.imp_p, true.imp_clicked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M events instead of 10M")
    ap.add_argument("--events", type=int, default=None, help="override the number of events")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the figures as flat JSON")
    args = ap.parse_args()
    n = args.events or (1_000_000 if args.quick else 10_000_000)
    config = MarketplaceConfig(n_events=n, seed=args.seed)
    proc = psutil.Process()
    peak = proc.memory_info().rss

    def track(_: int) -> None:
        nonlocal peak
        peak = max(peak, proc.memory_info().rss)

    cpu0, t0 = proc.cpu_times(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = generate(config, Path(tmp), progress=track)
        track(0)
    seconds = time.perf_counter() - t0
    cpu1 = proc.cpu_times()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    # whole-process high-water mark (includes imports), taken before the extra analysis below
    max_rss_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, peak / 2**20)
    anon_auc, anon_ll = without_user(config)
    events = summary.counts["events"]
    out = {
        "events": events,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "events_per_second": round(events / seconds),
        "peak_rss_mb": round(max_rss_mb, 1),
        "time_ratio_to_target": round(seconds / (SECONDS_PER_MILLION_TARGET * n / 1e6), 3),
        "rss_ratio_to_target": round(max_rss_mb / RSS_TARGET_MB, 3),
        "base_ctr": round(summary.base_ctr, 4),
        "bayes_auc": round(summary.bayes_auc, 4),
        "bayes_logloss": round(summary.bayes_logloss, 4),
        "auc_without_user": round(anon_auc, 4),
        "logloss_without_user": round(anon_ll, 4),
    }
    for k, v in out.items():
        print(f"{k:>24}: {v}")
    print(f"counts: {summary.counts}")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
