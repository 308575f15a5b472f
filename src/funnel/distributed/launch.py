"""Fit a torch ranker through ``torchrun`` from a parent process (the build's hook).

Why: the build either streamed its training rows to Parquet shards already (``[rank]
ddp_processes`` with impressions, :func:`funnel.rank.split.streamed_split`) or holds them in
memory, which this writes as one Parquet shard per process; it runs ``python -m
torch.distributed.run --standalone --nproc-per-node N -m funnel.distributed.train_rank`` on
this machine and loads the saved model, so the same trainer a cluster runs on its own shards
is exercised by every build that asks for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from funnel.distributed.shards import Shards, write_shards
from funnel.distributed.spec_fit import fit_columns
from funnel.exceptions import ModelFitError
from funnel.features.specs import spec_to_dict
from funnel.rank.base import Ranker, RankingData, specs_of
from funnel.rank.torch_ranker import TorchRanker


def fit_with_torchrun(
    ranker: TorchRanker, train: RankingData | Shards, valid: RankingData | None, workdir: Path,
    processes: int, *, timeout: float | None = None,
) -> tuple[TorchRanker, int]:
    """``ranker.fit(train, valid)`` by ``processes`` local DDP processes; returns the trained
    ranker as saved by process 0 (shards and model live in a temporary dir under ``workdir``)
    and the world size that trained it (for the build's figures)."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1; got {processes}")
    specs = ranker._feature_specs()
    columns = [c for c in fit_columns(specs) if c in train.columns]  # the shards' or the data's
    params = {k: v for k, v in ranker.get_params().items() if k not in ("features", "verbose")}
    threads = max(1, (os.cpu_count() or 1) // processes)
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="ddp-") as tmp:
        root = Path(tmp)
        if isinstance(train, Shards):
            train_dir = train.directory
        else:
            train_dir = root / "train"
            write_shards(train, train_dir, -(-len(train) // processes), columns)
        (root / "specs.json").write_text(json.dumps(
            [spec_to_dict(s) for s in specs_of(ranker.features)]))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(processes), "-m", "funnel.distributed.train_rank",
               "--ranker", ranker.name, "--specs", str(root / "specs.json"),
               "--params", json.dumps(params), "--train", str(train_dir),
               "--out", str(root / "model"), "--threads", str(threads)]
        if valid is not None:
            write_shards(valid, root / "valid", max(1, len(valid)), columns)
            cmd += ["--valid", str(root / "valid")]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ModelFitError(f"torchrun training of {ranker.name!r} failed "
                                f"(exit {proc.returncode}): {last}; set [rank] ddp_processes = 0 "
                                "to train in this process")
        model = Ranker.load(root / "model")
        report = json.loads((root / "model" / "ddp.json").read_text())
    if not isinstance(model, TorchRanker):
        raise ModelFitError(f"torchrun saved a {type(model).__name__}; expected a torch ranker")
    return model, int(report["world_size"])
