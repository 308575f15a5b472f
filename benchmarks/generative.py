"""Generative recall on MovieLens ml-100k (DiffRec protocol): baselines vs every sampler.

Runs EASE, item-kNN and a MultVAE-like autoencoder (the strong simple baselines) and the
DiffRec-style diffusion / rectified-flow / NICE recommenders in the same run, each tuned with
the same budget on the validation split, then prints Recall@20, NDCG@20 and ms per user for
DDPM (100 steps), DDIM 10/5, PF-ODE 10, SDE 50, rectified flow 1/2/4 and NICE 1.

    python benchmarks/generative.py --quick --json /tmp/generative.json
    python benchmarks/generative.py --split path/to/diffrec_split_dir
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from funnel.data.paths import shared_data_dir
from funnel.generative.evaluate import (
    Budget,
    compare,
    compare_dreamrec,
    table_rows,
    target_check,
)
from funnel.generative.splits import load_diffrec_split, load_movielens_split, save_diffrec_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 configs x 30 epochs per method")
    parser.add_argument("--json", type=Path, help="write the flat result object here")
    parser.add_argument("--split", type=Path, help="a DiffRec split directory (train_list.npy..)")
    parser.add_argument("--no-dreamrec", action="store_true",
                        help="skip the embedding-space (DreamRec) rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("FUNNEL_BENCH_THREADS", "1")))
    torch.manual_seed(0)

    if args.split is not None:
        split = load_diffrec_split(args.split)
        source = str(args.split)
    else:
        inter = shared_data_dir() / "movielens-100k" / "ml-100k.inter"
        if not inter.is_file():
            print(f"ml-100k not found at {inter}", file=sys.stderr)
            return 2
        # write the split in DiffRec's format and evaluate what we read back
        with tempfile.TemporaryDirectory() as tmp:
            save_diffrec_split(load_movielens_split(inter), Path(tmp))
            split = load_diffrec_split(Path(tmp))
        source = f"{inter} (ratings >= 4, chronological 7:1:2 per user)"

    budget = Budget.quick() if args.quick else Budget()
    print(f"data: {source}: {split.stats()}")
    print(f"budget per method: {budget.configs} configs, {budget.epochs} epochs, "
          f"hidden {budget.hidden}; threads {torch.get_num_threads()}, nproc {os.cpu_count()}")
    started = time.perf_counter()
    say = lambda msg: print(f"  .. {msg}", flush=True)  # noqa: E731
    result = compare(split, budget, progress=say)
    if not args.no_dreamrec:
        result.update(compare_dreamrec(split, budget, progress=say))
    result["total_seconds"] = time.perf_counter() - started

    ease = result["recall20_ease"]
    print(f"\n{'method':<28}{'Recall@20':>10}{'NDCG@20':>10}{'ms/user':>10}{'R/EASE':>9}")
    for name, r, n, ms in table_rows(result):
        ms_text = f"{ms:10.3f}" if ms is not None else f"{'-':>10}"
        print(f"{name:<28}{r:10.4f}{n:10.4f}{ms_text}{r / ease:9.3f}")
    best, check = target_check(result)
    result.update(check)
    print(f"\nbest <=10-step sampler: {best}: Recall@20 = {check['fast_sampler_recall_ratio']:.3f}"
          f" x DDPM-100's at {check['fast_sampler_speedup']:.1f}x less time; "
          f"{check['diffusion_vs_ease_recall_ratio']:.3f} x EASE's")
    print(f"total {result['total_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
