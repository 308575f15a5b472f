"""The rank build's rows cut in time, train | valid | test, in memory or streamed to shards.

Why two ways: a short log's rows fit the build process and every ranker trains on them in
memory. A long log's do not: :func:`streamed_split` reads the point-in-time rows a batch at a
time (:class:`funnel.features.training_set.TrainingRows`) and writes the training slice straight
to Parquet shards (:mod:`funnel.distributed.shards`' layout), which the torchrun trainers stream;
only the held-out slices and the training slice's clicked rows are kept. Both ways give the same
rows, sampled by the same seeded stream.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from funnel.distributed.shards import Shards, shard_table
from funnel.features.specs import as_columns
from funnel.features.training_set import TrainingRows, negatives_kept
from funnel.rank.base import RankingData

STREAM_MEMORY = "1500MB"
"""DuckDB's ``memory_limit`` on a streamed build's connection: computing the rows and joining
and sorting them with the replay spill past it instead of holding a long log (the pipeline's
10M-event training rows run within it, ``benchmarks/pipeline.py``)."""

SHARD_ROWS = 250_000
"""Training rows per shard file at most (before negative sampling), and at least one file per
process."""


def time_split(n: int, valid_fraction: float, test_fraction: float) -> tuple[slice, slice, slice]:
    """Rows are in time order: train | valid | test, the test set is the most recent."""
    n_test, n_valid = int(n * test_fraction), int(n * valid_fraction)
    a = n - n_test - n_valid
    return slice(0, a), slice(a, a + n_valid), slice(a + n_valid, n)


def group_split(
    groups: np.ndarray, valid_fraction: float, test_fraction: float
) -> tuple[slice, slice, slice]:
    """:func:`time_split`, each cut moved forward to where a new group starts (a click and
    its sampled negatives stay on one side)."""
    tr, va, te = time_split(len(groups), valid_fraction, test_fraction)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])

    def cut(at: int) -> int:
        j = int(np.searchsorted(starts, at))
        return int(starts[j]) if j < len(starts) else len(groups)

    a, b = cut(tr.stop), cut(va.stop)
    return slice(0, a), slice(a, b), slice(b, len(groups))


def ranking_data(table: pa.Table, rows: slice, label: str, rate: float = 1.0) -> RankingData:
    """Rows ``rows`` of a training-set table as :class:`RankingData` (groups = requests)."""
    t = table.slice(rows.start, rows.stop - rows.start)
    return RankingData(
        as_columns(t), np.asarray(t.column(label), dtype=np.float32),
        group=np.asarray(t.column("group_id").to_numpy(zero_copy_only=False)),
        negative_rate=rate,
    )


@dataclass
class Split:
    """What a rank build trains, tunes and tests on."""

    train_shards: Shards | None
    """The training slice as Parquet shards (a streamed split), else None."""
    valid_rows: pa.Table
    test_rows: pa.Table
    clicked_train_rows: pa.Table
    """The training slice's clicked rows: the post-click booking model learns from them."""
    click_rate: float
    """Share of all rows clicked (the serving snapshot's item-CTR prior)."""
    _train: RankingData | None = None

    @cached_property
    def valid(self) -> RankingData:
        return ranking_data(self.valid_rows, slice(0, self.valid_rows.num_rows), "click")

    @cached_property
    def test(self) -> RankingData:
        return ranking_data(self.test_rows, slice(0, self.test_rows.num_rows), "click")

    @property
    def train_rows(self) -> int:
        return len(self.train_shards) if self.train_shards is not None else len(self.train())

    def train(self) -> RankingData:
        """The training slice in memory (read from the shards once if it was streamed)."""
        if self._train is None:
            assert self.train_shards is not None
            self._train = self.train_shards.read_all()
        return self._train


def memory_split(
    table: pa.Table, cuts: tuple[slice, slice, slice], negative_rate: float, seed: int, *,
    keep: Collection[str] | None = None,
) -> Split:
    """``table``'s rows cut at ``cuts``; the training slice's negatives kept at
    ``negative_rate``; only the columns in ``keep`` when given."""
    tr, va, te = cuts
    table = _kept(table, keep)
    train = ranking_data(table, tr, "click")
    if negative_rate < 1.0:
        sampled = negatives_kept(train.label, negative_rate, np.random.default_rng(seed))
        train = train.take(np.flatnonzero(sampled))
        train.negative_rate = negative_rate
    clicked = np.flatnonzero(np.asarray(table.column("click"))[tr])
    click_rate = float(np.asarray(table.column("click")).mean()) if table.num_rows else 0.0
    return Split(None, table.slice(va.start, va.stop - va.start),
                 table.slice(te.start, te.stop - te.start), table.take(pa.array(clicked)),
                 click_rate, train)


def streamed_split(
    rows: TrainingRows, valid_fraction: float, test_fraction: float, negative_rate: float,
    seed: int, directory: Path, processes: int, *, keep: Collection[str] | None = None,
    batch_rows: int = 65_536,
) -> Split:
    """:func:`memory_split` of ``rows`` without holding its training slice: that slice goes to
    shard files under ``directory`` (a multiple of ``processes`` files, at most
    ``SHARD_ROWS`` rows each) as the batches arrive."""
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive int; got {processes!r}")
    tr, va, te = time_split(rows.rows, valid_fraction, test_fraction)
    per_round = processes * SHARD_ROWS
    files = processes * max(1, -(-tr.stop // per_round))
    per_file = max(1, -(-tr.stop // files))
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    writer: pq.ParquetWriter | None = None
    held: dict[str, list[pa.Table]] = {"valid": [], "test": [], "clicked": []}
    start = 0
    for whole in rows.batches(batch_rows):
        batch = _kept(whole, keep)
        for lo, hi, part in _pieces(start, batch.num_rows, tr, va, per_file):
            piece = batch.slice(lo - start, hi - lo)
            if part in ("valid", "test"):
                held[part].append(piece)
                continue
            label = np.asarray(piece.column("click"))
            held["clicked"].append(piece.filter(pa.array(label.astype(bool))))
            if negative_rate < 1.0:
                piece = piece.filter(pa.array(negatives_kept(label, negative_rate, rng)))
            if writer is None or lo % per_file == 0:
                if writer is not None:
                    writer.close()
                writer = _shard_writer(directory / f"part-{lo // per_file:05d}.parquet",
                                       piece, negative_rate)
            writer.write_table(_shard_table(piece, negative_rate))
        start += batch.num_rows
    if writer is not None:
        writer.close()
    empty = _empty_like(held)
    return Split(Shards.open(directory) if tr.stop else None,
                 _concat(held["valid"], empty), _concat(held["test"], empty),
                 _concat(held["clicked"], empty), rows.click_rate)


def _kept(table: pa.Table, keep: Collection[str] | None) -> pa.Table:
    """``table`` with only the columns in ``keep`` (all when None), in its own order: a list
    column nobody reads is cheap as Arrow and costly as :class:`RankingData`'s Python lists
    (the behaviour sequence: three lists of 50 strings a row)."""
    return table if keep is None else table.select([c for c in table.column_names if c in keep])


def _pieces(
    start: int, n: int, tr: slice, va: slice, per_file: int,
) -> list[tuple[int, int, str]]:
    """``(first row, end row, "train" | "valid" | "test")`` pieces of the global rows
    ``start .. start + n``, the training rows also cut where a shard file ends."""
    cuts = {start, start + n}
    cuts |= {c for c in (tr.stop, va.stop) if start < c < start + n}
    cuts |= {c for c in range(-(-start // per_file) * per_file, min(tr.stop, start + n),
                               per_file) if c > start}
    edges = sorted(cuts)
    out = []
    for lo, hi in zip(edges, edges[1:], strict=False):
        part = "train" if lo < tr.stop else "valid" if lo < va.stop else "test"
        out.append((lo, hi, part))
    return out


def _shard_table(rows: pa.Table, negative_rate: float) -> pa.Table:
    """Training rows in the shard layout, labelled by their clicks, grouped by request."""
    return shard_table(rows, np.asarray(rows.column("click")), rows.column("group_id"),
                       negative_rate)


def _shard_writer(path: Path, rows: pa.Table, negative_rate: float) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, _shard_table(rows.slice(0, 0), negative_rate).schema)


def _empty_like(held: dict[str, list[pa.Table]]) -> pa.Table | None:
    """An empty table of the rows' schema, from any piece held (None if none was)."""
    for pieces in held.values():
        if pieces:
            return pieces[0].slice(0, 0)
    return None


def _concat(pieces: list[pa.Table], empty: pa.Table | None) -> pa.Table:
    if pieces:
        return pa.concat_tables(pieces)
    return empty if empty is not None else pa.table({})
