"""Data-parallel training of the PyTorch rankers under ``torch.distributed`` (DDP), each
process streaming its own Parquet shard files (:mod:`funnel.distributed.shards`).

Why this shape: no process may need the whole training set. So

- the feature specs are fitted by one streaming pass per process over its own files; the
  processes exchange per-spec partial statistics (vocabulary counts, moments, history items,
  a bucket-quantile sample) with ``all_gather_object`` and every process merges the same list
  in the same order (:mod:`funnel.distributed.spec_fit`). Every process thus has the feature
  set ``FeatureSet.fit`` would give on all rows (bucket edges exact up to
  ``spec_fit.QUANTILE_SAMPLE`` rows) and, seeded alike, the same initial network. Hashing
  alone would also agree across processes but would change the model (vocabularies and
  numeric standardization are what the single-process ranker learns from);
- each process reads its files in a per-epoch seeded order, encodes record batches as they
  come, shuffles them in a buffer of ``shuffle_rows`` rows and contributes one local batch of
  ``ceil(batch_size / W)`` rows per step. The number of steps per epoch is the largest local
  batch count, known to every process from the Parquet footers (no exchange needed); a process
  out of rows joins the remaining steps with a zero loss. Each process's loss is its rows'
  summed loss x ``W / rows in the step over all processes``, so after DDP's gradient average
  every step follows the mean loss of the rows of that global step, as one process would;
- validation is small: every process reads it whole and computes the same record, so the
  history and the early stop (the ranker's own rules) are identical everywhere.

Memory per process: the network, the fitted specs, one record batch and the shuffle buffer
(``shuffle_rows`` x slots x 12 bytes encoded), and the validation set. The price: rows are
re-encoded every epoch, and the shuffle is per file order and buffer, not global, so the
result matches ``ranker.fit`` in quality, not bit for bit (tests/distributed/test_ddp_rank.py).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from funnel.distributed.shards import Shards, batch_columns
from funnel.distributed.spec_fit import (
    QUANTILE_SAMPLE,
    Partial,
    fit_columns,
    merged_feature_set,
    partial_fit,
)
from funnel.exceptions import ModelFitError
from funnel.features.specs import FeatureSet
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


@dataclass(frozen=True)
class StepPlan:
    """Rows each process contributes at each step, from the shard footers alone."""

    local_rows: tuple[int, ...]
    """Training rows of each process."""
    batch: int
    """Rows per local batch (the last one of a process may be shorter)."""

    @classmethod
    def of(cls, train: Shards, world: int, batch_size: int) -> StepPlan:
        rows = tuple(len(train.of_rank(r, world)) for r in range(world))
        return cls(rows, -(-batch_size // world))

    @property
    def steps(self) -> int:
        return max(-(-n // self.batch) for n in self.local_rows)

    def step_rows(self, step: int) -> int:
        """Rows of all processes together at ``step``."""
        return sum(min(self.batch, max(0, n - step * self.batch)) for n in self.local_rows)


def exit_without_finalizing() -> NoReturn:
    """End a torchrun worker whose process group is already destroyed, skipping interpreter
    finalization: gloo's worker threads may still hold tensors whose release at finalization
    aborts the process ("terminate called without an active exception", SIGABRT), which
    torchrun reports as a failed run after the work was done and saved. Seen once under load
    in ``make test``; the upstream fix (an atexit hook in c10d) was abandoned."""
    import logging
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def init_single(backend: str = "gloo") -> tuple[int, int]:
    """A process group of one on loopback: the shard trainer run without torchrun streams every
    file in one process, so the same code trains a ranker from Parquet at every scale."""
    if not dist.is_initialized():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0,
                                world_size=1)
    return 0, 1


def fit_ddp(
    ranker: TorchRanker, train: Shards, valid: Shards | RankingData | None = None, *,
    shuffle_rows: int = 65536, read_rows: int = 8192,
) -> TorchRanker:
    """Train ``ranker`` on every process of an initialized process group, process ``r`` of
    ``W`` reading shard files ``r, r + W, ...`` of ``train``; ``valid`` is read whole."""
    if not dist.is_initialized():
        raise RuntimeError("fit_ddp needs an initialized process group; call init_from_env()")
    rank, world = dist.get_rank(), dist.get_world_size()
    if len(train.files) < world:
        raise ModelFitError(f"{train.directory}: {len(train.files)} shard file(s) for {world} "
                            "processes; write at least one file per process (smaller "
                            "rows_per_file)")
    t0 = time.perf_counter()
    mine = train.of_rank(rank, world)
    features = _prepare(ranker, train, mine, read_rows)
    vdata = valid.read_all() if isinstance(valid, Shards) else valid
    venc = features.transform(vdata.columns) if vdata is not None else None
    net: nn.Module = ranker.network_
    ddp = DistributedDataParallel(net)
    opts = _optimizers(net, ranker.learning_rate, ranker.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    plan = StepPlan.of(train, world, ranker.batch_size)
    columns = [c for c in features.source_columns if c in train.columns]
    # a process out of rows still runs the network once per step (DDP's all-reduce needs its
    # gradients): on a real row it has seen, which every network handles (zeros may not: DIN's
    # attention over an all-padding history)
    dummy = (torch.zeros((1, len(features.slot_fields)), dtype=torch.int64),
             torch.zeros((1, len(features.slot_fields)), dtype=torch.float32))
    history: list[dict[str, float]] = []
    stopper = EarlyStopping(ranker.patience, has_valid=venc is not None)
    t1, c1 = time.perf_counter(), time.process_time()
    for epoch in range(ranker.epochs):
        ddp.train()
        rng = np.random.default_rng([ranker.seed, epoch, rank])
        batches = local_batches(mine, features, columns, plan.batch, shuffle_rows, read_rows,
                                rng)
        total = torch.zeros(1, dtype=torch.float64)
        for step in range(plan.steps):
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            got = next(batches, None)
            if got is None:  # this process is out of rows: join the step with a zero loss
                loss = ddp(*dummy).sum() * 0.0
            else:
                idx, val, y = got
                dummy = (idx[:1], val[:1])
                summed = loss_fn(ddp(idx, val), y)
                total += summed.detach().double()
                loss = summed * (world / plan.step_rows(step))
            loss.backward()
            for opt in opts:
                opt.step()
        if next(batches, None) is not None:
            raise RuntimeError(f"{train.directory}: rank {rank} read more rows than its files' "
                               "footers say; were the shards rewritten during training?")
        dist.all_reduce(total)
        # every process holds the same weights: the same record and stop on every process
        record = epoch_record(ranker, epoch, float(total.item()) / len(train), venc,
                              None if vdata is None else vdata.label)
        history.append(record)
        if stopper.update(net, record):
            break
    stopper.restore(net)
    ranker.history_ = history
    ranker.fit_seconds_ = {"features": t1 - t0, "train": time.perf_counter() - t1,
                           "train_cpu": time.process_time() - c1}
    return ranker


def _prepare(ranker: TorchRanker, train: Shards, mine: Shards, read_rows: int) -> FeatureSet:
    """``TorchRanker._prepare`` from shards: the checks, the feature set fitted by a streaming
    pass per process merged across processes, the seeded network."""
    ranker._check_fit(len(train), str(train.directory))
    specs = ranker._feature_specs()
    needed = set(fit_columns(specs))
    columns = [c for c in train.columns if c in needed]  # a missing one: the spec says which
    rate = min(1.0, QUANTILE_SAMPLE / len(train))
    parts = partial_fit(specs, ((start, batch_columns(b)[0])
                                for start, b in mine.batches(read_rows, columns)),
                        rate, ranker.seed)
    gathered: list[list[Partial]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, parts)
    features = merged_feature_set(specs, gathered)
    ranker._new_network(features, train.negative_rate)
    return features


_Piece = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Encoded rows waiting in the shuffle buffer: (idx, val, label)."""


def local_batches(
    shards: Shards, features: FeatureSet, columns: list[str], batch: int, shuffle_rows: int,
    read_rows: int, rng: np.random.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(idx, val, label)`` batches of ``batch`` rows (the last may be shorter) from
    ``shards`` read in a random file order, shuffled within a buffer of ``shuffle_rows``."""
    pieces: list[_Piece] = []
    held = 0
    order = rng.permutation(len(shards.files)).tolist()
    for _, record_batch in shards.batches(read_rows, columns, order):
        cols, y = batch_columns(record_batch)
        enc = features.transform(cols)
        pieces.append((enc.idx, enc.val, y))
        held += len(y)
        if held >= shuffle_rows:
            pieces = yield from _emit(pieces, batch, rng, final=False)
            held = sum(len(p[2]) for p in pieces)
    yield from _emit(pieces, batch, rng, final=True)


def _emit(
    pieces: list[_Piece], batch: int,
    rng: np.random.Generator, *, final: bool,
) -> Generator[tuple[torch.Tensor, torch.Tensor, torch.Tensor], None, list[_Piece]]:
    """Shuffle the buffered rows, yield whole batches (and the rest when ``final``); returns
    the rows kept for the next buffer."""
    if not pieces:
        return []
    idx, val, y = (np.concatenate([p[k] for p in pieces]) for k in range(3))
    perm = rng.permutation(len(y))
    idx_t, val_t, y_t = (torch.from_numpy(a[perm]) for a in (idx, val, y))
    n = len(y)
    stop = n if final else n - n % batch
    for lo in range(0, stop, batch):
        hi = min(lo + batch, stop)
        yield idx_t[lo:hi], val_t[lo:hi], y_t[lo:hi]
    if stop == n:
        return []
    return [(idx[perm[stop:]], val[perm[stop:]], y[perm[stop:]])]
