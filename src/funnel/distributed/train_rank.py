"""``torchrun`` entry point: train one ranker data-parallel from Parquet shards, save on rank 0.

    torchrun --nproc-per-node 2 -m funnel.distributed.train_rank \\
        --ranker deepfm --specs specs.json --params '{"epochs": 3}' \\
        --train train_dir [--valid valid_dir] --out model_dir

A shard directory holds ``part-*.parquet`` files with the feature columns and a float
``__label__`` column (``funnel.distributed.shards.write_shards`` writes them); process ``r``
of ``W`` streams files ``r, r + W, ...``, so write at least ``W`` files. The validation
directory is read whole by every process (keep it small). On a GPU cluster use
``--backend nccl`` (and one process per GPU). Run without torchrun (``python -m
funnel.distributed.train_rank ...``) it trains in one process that streams every file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
from pathlib import Path

import torch
import torch.distributed as dist

from funnel.distributed.ddp_rank import (
    exit_without_finalizing,
    fit_ddp,
    init_from_env,
    init_single,
)
from funnel.distributed.shards import Shards
from funnel.exceptions import ConfigError
from funnel.rank.registry import get_ranker
from funnel.rank.torch_ranker import TorchRanker


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranker", required=True)
    ap.add_argument("--specs", type=Path, required=True, help="JSON list of feature specs")
    ap.add_argument("--params", default="{}", help="JSON object of ranker parameters")
    ap.add_argument("--train", type=Path, required=True, help="directory of Parquet shards")
    ap.add_argument("--valid", type=Path, default=None, help="directory of Parquet shards")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shuffle-rows", type=int, default=65536,
                    help="rows each process shuffles together (memory: rows x slots x 12 B)")
    a = ap.parse_args(argv)
    cls = get_ranker(a.ranker)
    if not issubclass(cls, TorchRanker):
        ap.error(f"--ranker {a.ranker}: data-parallel training is for the torch rankers only")
    try:  # before joining the process group: a bad directory fails every process alike, fast
        train = Shards.open(a.train)
        valid = Shards.open(a.valid) if a.valid else None
    except ConfigError as err:
        ap.error(str(err))
    torch.set_num_threads(a.threads)
    # under torchrun: its process group; run alone: a group of one streaming every file
    rank, world = init_from_env(a.backend) if "RANK" in os.environ else init_single(a.backend)
    ranker = cls(json.loads(a.specs.read_text()), **json.loads(a.params))
    fit_ddp(ranker, train, valid, shuffle_rows=a.shuffle_rows)
    peak_mb = [0.0] * world  # ru_maxrss is in KiB on Linux
    dist.all_gather_object(peak_mb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if rank == 0:
        ranker.save(a.out)
        (a.out / "ddp.json").write_text(json.dumps({
            "world_size": world, "backend": a.backend, "history": ranker.history_,
            "fit_seconds": ranker.fit_seconds_, "train_rows": len(train),
            "files_per_process": [len(train.of_rank(r, world).files) for r in range(world)],
            "peak_rss_mb": peak_mb,
        }, indent=2))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()  # returns only after the process group is destroyed
    exit_without_finalizing()
