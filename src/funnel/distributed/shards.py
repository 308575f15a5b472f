"""Ranking rows as a directory of Parquet shards, read one process's share at a time.

Why: a data-parallel trainer must not hold the whole training set. ``write_shards`` lays the
feature columns and the label out as ``part-00000.parquet, part-00001.parquet, ...``; process
``r`` of ``W`` reads files ``r, r + W, ...`` (:meth:`Shards.of_rank`) as record batches, so one
process holds one batch of raw rows at a time. Row counts come from the Parquet footers, so
every process knows every other's share without reading it. Strings stay Arrow strings, lists
Arrow lists: no pickle. The ``negative_rate`` of the rows travels in the schema metadata.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from funnel.exceptions import ConfigError
from funnel.features.specs import as_columns
from funnel.rank.base import RankingData

LABEL = "__label__"
GROUP = "__group__"
NEGATIVE_RATE = b"funnel.negative_rate"
PATTERN = "part-*.parquet"


def _arrow(name: str, values: np.ndarray) -> pa.Array:
    try:
        return pa.array(values, from_pandas=True) if values.dtype == object else pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise ValueError(f"column '{name}' cannot be stored as Parquet ({err}); give it one type "
                         "per column (str, number or list of str)") from None


def shard_table(
    features: pa.Table, label: np.ndarray, group: pa.Array | pa.ChunkedArray | None,
    negative_rate: float,
) -> pa.Table:
    """The layout of every shard file: the feature columns, the label as float32 ``LABEL``,
    the request group as ``GROUP`` (when given), ``negative_rate`` in the schema metadata."""
    table = features.append_column(LABEL, pa.array(np.asarray(label, dtype=np.float32)))
    if group is not None:
        table = table.append_column(GROUP, group)
    return table.replace_schema_metadata({NEGATIVE_RATE: repr(float(negative_rate)).encode()})


def write_shards(
    data: RankingData, directory: Path, rows_per_file: int,
    columns: Sequence[str] | None = None,
) -> list[Path]:
    """Write ``data`` (only ``columns`` when given, plus label and group) as Parquet shards of
    at most ``rows_per_file`` rows each; returns the files in order."""
    if rows_per_file < 1:
        raise ValueError(f"rows_per_file must be >= 1; got {rows_per_file}")
    names = list(data.columns) if columns is None else list(columns)
    missing = [c for c in names if c not in data.columns]
    if missing:
        raise KeyError(f"write_shards: column(s) {missing} are not in the data; "
                       f"it has {sorted(data.columns)}")
    group = None if data.group is None else _arrow(GROUP, np.asarray(data.group))
    table = shard_table(pa.table({c: _arrow(c, data.columns[c]) for c in names}), data.label,
                        group, data.negative_rate)
    directory.mkdir(parents=True, exist_ok=True)
    stale = sorted(directory.glob(PATTERN))
    if stale:
        raise FileExistsError(f"{directory}: holds {len(stale)} shard file(s) already; "
                              "write into an empty directory")
    paths = []
    for k, start in enumerate(range(0, max(len(data), 1), rows_per_file)):
        path = directory / f"part-{k:05d}.parquet"
        pq.write_table(table.slice(start, rows_per_file), path)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Shards:
    """Shard files with their row counts and global row offsets (from the footers)."""

    directory: Path
    files: tuple[Path, ...]
    rows: tuple[int, ...]
    offsets: tuple[int, ...]
    """Global index of each file's first row, over all files of the directory in name order."""
    columns: tuple[str, ...]
    """Feature columns (label and group excluded), as in the first file."""
    negative_rate: float

    @classmethod
    def open(cls, directory: Path) -> Shards:
        """Check a shard directory (exists, has files, each has the label) from footers only."""
        if not directory.is_dir():
            raise ConfigError(f"{directory}: no such directory; write the rows with "
                              "funnel.distributed.shards.write_shards first")
        files = tuple(sorted(directory.glob(PATTERN)))
        if not files:
            raise ConfigError(f"{directory}: no {PATTERN} files; write the rows with "
                              "funnel.distributed.shards.write_shards first")
        rows, rates, schemas = [], set(), []
        for f in files:
            meta = pq.read_metadata(f)
            schema = meta.schema.to_arrow_schema()
            if LABEL not in schema.names:
                raise ConfigError(f"{f}: no {LABEL!r} column; add the 0/1 label as {LABEL!r} "
                                  "(write_shards does)")
            rows.append(meta.num_rows)
            rates.add((schema.metadata or {}).get(NEGATIVE_RATE, b"1.0"))
            schemas.append(schema)
        if len(rates) > 1:
            raise ConfigError(f"{directory}: files disagree on {NEGATIVE_RATE.decode()} "
                              f"({sorted(r.decode() for r in rates)}); rewrite them in one call")
        columns = tuple(n for n in schemas[0].names if n not in (LABEL, GROUP))
        for f, s in zip(files, schemas, strict=True):
            if set(s.names) - {GROUP} != set(schemas[0].names) - {GROUP}:
                raise ConfigError(f"{f}: columns {sorted(s.names)} differ from {files[0].name}'s "
                                  f"{sorted(schemas[0].names)}; rewrite the directory in one call")
        offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(rows)[:-1]]))
        return cls(directory, files, tuple(rows), offsets, columns,
                   float(rates.pop().decode()))

    def __len__(self) -> int:
        return int(sum(self.rows))

    def of_rank(self, rank: int, world: int) -> Shards:
        """Process ``rank``'s files: ``rank, rank + world, ...`` (disjoint, together all)."""
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside a world of {world} processes")
        return Shards(self.directory, self.files[rank::world], self.rows[rank::world],
                      self.offsets[rank::world], self.columns, self.negative_rate)

    def batches(
        self, batch_rows: int, columns: Sequence[str] | None = None,
        order: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``(global index of the first row, record batch)`` of at most ``batch_rows`` rows,
        file after file (``order``: positions into ``files``), the label as ``LABEL``."""
        wanted = None if columns is None else [*columns, LABEL]
        for k in range(len(self.files)) if order is None else order:
            start = self.offsets[k]
            for batch in pq.ParquetFile(self.files[k]).iter_batches(batch_rows, columns=wanted):
                yield start, batch
                start += batch.num_rows

    def read_all(self) -> RankingData:
        """Every row in memory (validation sets, tests): the rows ``write_shards`` was given."""
        table = pa.concat_tables([pq.read_table(f) for f in self.files], promote_options="default")
        group = None
        if GROUP in table.column_names:
            group = table.column(GROUP).to_numpy(zero_copy_only=False)
        cols = as_columns(table.select(list(self.columns)))
        return RankingData(cols, table.column(LABEL).to_numpy(zero_copy_only=False),
                           group=group, negative_rate=self.negative_rate)


def batch_columns(batch: pa.RecordBatch) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A record batch as ``(raw feature columns, float32 label)``."""
    label = np.asarray(batch.column(LABEL).to_numpy(zero_copy_only=False), dtype=np.float32)
    keep = [n for n in batch.schema.names if n not in (LABEL, GROUP)]
    return as_columns(batch.select(keep)), label
