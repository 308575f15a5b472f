"""``torchrun`` entry point: train one ranker data-parallel from .npz columns, save on rank 0.

    torchrun --nproc-per-node 2 -m funnel.distributed.train_rank \\
        --ranker deepfm --specs specs.json --params '{"epochs": 3}' \\
        --train train.npz [--valid valid.npz] --out model_dir

An ``.npz`` holds one array per feature column (strings as unicode arrays; no pickle) plus
``__label__``. On a GPU cluster use ``--backend nccl`` (and one process per GPU).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from funnel.distributed.ddp_rank import fit_ddp, init_from_env
from funnel.rank.base import RankingData
from funnel.rank.registry import get_ranker
from funnel.rank.torch_ranker import TorchRanker

LABEL = "__label__"


def save_npz(path: Path, data: RankingData) -> None:
    """Columns + label without pickle (object string columns become unicode arrays)."""
    arrays = {k: (v.astype(str) if v.dtype == object else v) for k, v in data.columns.items()}
    np.savez(path, allow_pickle=False, **arrays, **{LABEL: data.label})


def load_npz(path: Path) -> RankingData:
    with np.load(path, allow_pickle=False) as z:
        if LABEL not in z.files:
            raise ValueError(f"{path}: expected an array named {LABEL!r}; got {sorted(z.files)}")
        cols = {k: (z[k].astype(object) if z[k].dtype.kind == "U" else z[k])
                for k in z.files if k != LABEL}
        return RankingData(cols, z[LABEL])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranker", required=True)
    ap.add_argument("--specs", type=Path, required=True, help="JSON list of feature specs")
    ap.add_argument("--params", default="{}", help="JSON object of ranker parameters")
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--valid", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    cls = get_ranker(a.ranker)
    if not issubclass(cls, TorchRanker):
        ap.error(f"--ranker {a.ranker}: data-parallel training is for the torch rankers only")
    torch.set_num_threads(a.threads)
    rank, world = init_from_env(a.backend)
    ranker = cls(json.loads(a.specs.read_text()), **json.loads(a.params))
    valid = load_npz(a.valid) if a.valid else None
    fit_ddp(ranker, load_npz(a.train), valid)
    if rank == 0:
        ranker.save(a.out)
        (a.out / "ddp.json").write_text(json.dumps({
            "world_size": world, "backend": a.backend, "history": ranker.history_,
            "fit_seconds": ranker.fit_seconds_,
        }, indent=2))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
