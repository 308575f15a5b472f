"""Data-parallel training of the PyTorch rankers under ``torch.distributed`` (DDP).

Every process holds the full (already encoded) training set and walks the SAME shuffled order
as single-process training (same seed); each global batch of ``batch_size`` rows is split
between the ``world_size`` processes (rank r takes rows ``r, r + W, ...``), DDP averages the
gradients, so each optimizer step sees the gradient of the whole batch, as on one process.
The result therefore matches ``ranker.fit`` up to floating-point summation order. The network,
losses, optimizers (SparseAdam for embeddings, Adam for dense layers) and early stopping are
the ranker's own; this module only adds the process group and the batch split.

At scale each process would read its own shard of the training Parquet instead of all rows;
the split rule is the only thing that changes (see docs/scaling.md).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from funnel.rank.base import RankingData
from funnel.rank.torch_ranker import (
    EarlyStopping,
    TorchRanker,
    _optimizers,
    epoch_record,
)


def init_from_env(backend: str = "gloo") -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (RANK, WORLD_SIZE, MASTER_ADDR...)."""
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(
                f"environment variable {var} is not set; launch with torchrun "
                "(e.g. torchrun --nproc-per-node 2 -m funnel.distributed.train_rank ...)"
            )
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def fit_ddp(ranker: TorchRanker, train: RankingData, valid: RankingData | None = None
            ) -> TorchRanker:
    """``ranker.fit(train, valid)`` on every process of an initialized process group."""
    if not dist.is_initialized():
        raise RuntimeError("fit_ddp needs an initialized process group; call init_from_env()")
    rank, world = dist.get_rank(), dist.get_world_size()
    t0 = time.perf_counter()
    enc, venc = ranker._prepare(train, valid)  # the same checks, specs and seeded network
    net: nn.Module = ranker.network_
    ddp = DistributedDataParallel(net)
    opts = _optimizers(net, ranker.learning_rate, ranker.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    idx_t, val_t = torch.from_numpy(enc.idx), torch.from_numpy(enc.val)
    y_t = torch.from_numpy(np.asarray(train.label, dtype=np.float32))
    gen = torch.Generator().manual_seed(ranker.seed)
    n, bs = len(y_t), ranker.batch_size
    n_batches = (n + bs - 1) // bs
    history: list[dict[str, float]] = []
    stopper = EarlyStopping(ranker.patience, has_valid=venc is not None)
    t1 = time.perf_counter()
    for epoch in range(ranker.epochs):
        ddp.train()
        perm = torch.randperm(n, generator=gen)
        total = torch.zeros(1, dtype=torch.float64)
        for b in range(n_batches):
            rows = perm[b * bs : (b + 1) * bs][rank::world]
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            if len(rows) == 0:  # a last batch smaller than the world: join with a zero loss
                loss = ddp(idx_t[:1], val_t[:1]).sum() * 0.0
            else:
                loss = loss_fn(ddp(idx_t[rows], val_t[rows]), y_t[rows])
                total += loss.detach().double() * len(rows)
            loss.backward()
            for opt in opts:
                opt.step()
        dist.all_reduce(total)
        # every rank holds the same weights: the same record and the same stop on every rank
        record = epoch_record(ranker, epoch, float(total.item()) / n, venc,
                              None if valid is None else valid.label)
        history.append(record)
        if stopper.update(net, record):
            break
    stopper.restore(net)
    ranker.history_ = history
    ranker.fit_seconds_ = {"features": t1 - t0, "train": time.perf_counter() - t1}
    return ranker
