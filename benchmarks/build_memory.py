"""The rank build's memory on a long log: rows in memory vs streamed to shards, same log, same run.

Each build runs in its own process (``_workers.run_worker``: peak RSS of the build process and
of its whole tree, torchrun workers included, sampled every 50 ms) on one synthetic
marketplace:

- memory: ``[rank] ddp_processes = 0``, the default: the point-in-time rows are built whole in
  the build process and DeepFM trains on them there;
- streamed: ``[rank] ddp_processes = 2``: the rows stream out of DuckDB a batch at a time, the
  training slice goes straight to Parquet shards and two torchrun processes train DeepFM from
  them (``funnel.rank.split.streamed_split``); the build process keeps the held-out slices.

Both train DeepFM alone (no importance, no out-of-fold vectors) for ``--epochs``; the held-out
AUC of each is printed beside its memory so a saving that costs quality shows.

    python benchmarks/build_memory.py --quick          # 300k events
    python benchmarks/build_memory.py --json out.json  # 2M events
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "src"))

import _workers  # noqa: E402  (benchmarks/ is on sys.path)

MODES = {"memory": 0, "streamed": 2}


def worker(workspace: Path, processes: int, epochs: int) -> None:
    from funnel.rank.build import RankConfig, build_rank
    from funnel.workspace import Workspace

    ws = Workspace(workspace)
    config = RankConfig(models=("deepfm",), serve_model="deepfm", epochs=epochs,
                        importance_repeats=0, oof_folds=0, ddp_processes=processes)
    t0 = time.perf_counter()
    with ws.artifacts.begin() as build:
        metrics = build_rank(ws, build, config)
    print(json.dumps({"wall_s": time.perf_counter() - t0, "auc": metrics["deepfm.auc"],
                      "rows_train": metrics["rows.train"], "rows_test": metrics["rows.test"]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="300k events, 1 epoch")
    ap.add_argument("--workspace", type=Path, default=None,
                    help="reuse (or make once) this synthetic workspace")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", choices=sorted(MODES), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick:
        a.events, a.epochs = 300_000, 1
    if a.worker:
        assert a.workspace is not None
        worker(a.workspace, MODES[a.worker], a.epochs)
        return
    with tempfile.TemporaryDirectory(prefix="build-memory-") as tmp:
        ws = a.workspace or Path(tmp) / "ws"
        if not (ws / "store.duckdb").exists():
            from funnel.build import synthetic_workspace

            print(f"generating {a.events:,} events into {ws} ...", flush=True)
            synthetic_workspace(ws, events=a.events, stages=())
        res = {}
        for mode in MODES:
            print(f"building the ranker, rows {mode} ...", flush=True)
            res[mode] = _workers.run_worker(HERE, ["--worker", mode, "--workspace", str(ws),
                                                   "--epochs", str(a.epochs)])
    m, s = res["memory"], res["streamed"]
    print(f"\n{a.events:,} events: {m['rows_train']:,.0f} training and {m['rows_test']:,.0f} "
          f"test impressions, DeepFM {a.epochs} epoch(s), {os.cpu_count()} cores")
    print(f"{'rows':>9} {'build MB':>9} {'largest MB':>11} {'tree MB':>8} {'wall s':>7} "
          f"{'AUC':>6}")
    for mode, r in res.items():
        print(f"{mode:>9} {r['peak_mb_root']:9.0f} {r['peak_mb_process']:11.0f} "
              f"{r['peak_mb']:8.0f} {r['wall_s']:7.1f} {r['auc']:6.4f}")
    ratio = s["peak_mb_process"] / m["peak_mb_process"]
    wall = s["wall_s"] / m["wall_s"]
    print(f"largest process, streamed / memory: {ratio:.2f}x; wall {wall:.2f}x")
    out = {"events": a.events, "epochs": a.epochs,
           "rows_train": m["rows_train"], "rows_test": m["rows_test"],
           "peak_mb_process_memory": m["peak_mb_process"],
           "peak_mb_process_streamed": s["peak_mb_process"],
           "peak_mb_build_memory": m["peak_mb_root"],
           "peak_mb_build_streamed": s["peak_mb_root"],
           "peak_mb_tree_memory": m["peak_mb"], "peak_mb_tree_streamed": s["peak_mb"],
           "peak_ratio_streamed_vs_memory": ratio,
           "wall_s_memory": m["wall_s"], "wall_s_streamed": s["wall_s"],
           "auc_memory": m["auc"], "auc_streamed": s["auc"]}
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
