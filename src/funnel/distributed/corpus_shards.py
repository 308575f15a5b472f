"""This process's shard of a Parquet session table, encoded with the vocabulary of all shards.

A data-parallel embedding run must not have any process read the whole corpus. Process ``r``
of ``W`` reads files ``r, r + W, ...`` of the sorted file list (the pipeline's ``corpora/`` or
``sessions/`` output, ``dt=`` partitions allowed) in record batches, twice:

1. count pass: token counts and session markets of the shard, streamed batch by batch;
2. merge: the token ids of all shards are gathered (``all_gather_object``), every process
   forms the same sorted union and ``all_reduce``-s its counts over it, then applies
   ``min_count`` and orders by (count desc, token) exactly as ``build_corpus`` does, so the
   vocabulary equals the one-process vocabulary bit for bit;
3. encode pass: the shard's sessions become the flat int arrays the numba kernel reads.

Memory stays bounded by the vocabulary, not the corpus: the merge moves token ids and counts
(the gather briefly holds every shard's id list, at most ``W`` x the vocabulary), never
sessions. The one thing held whole is the shard's own encoded sessions (int32 tokens plus
offsets: 1/W of the corpus, ~4 bytes per click), which the kernel needs in memory. Without a
catalog, word markets are majority votes of session markets, summed across processes in row
chunks from each shard's sparse (word, market) counts.

Filtering matches ``ItemEmbeddings`` / ``QueryEmbeddings`` per session (dwell, empty tokens,
query normalization and de-duplication, min_count, min_session_length), so the union of the
shards is the corpus one process would build from the concatenated table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist

from funnel.embed.corpus import Corpus, query_sequence, session_tokens
from funnel.exceptions import ModelFitError

BATCH_ROWS = 65_536
"""Sessions per record batch of the streaming passes."""

_VOTE_CELLS = 4_000_000
"""Cells (words x markets) of one all-reduced chunk of market votes (32 MB of int64)."""


def parquet_files(path: Path) -> list[Path]:
    """``path`` itself, or every ``*.parquet`` under it (sorted; ``_``/``.`` entries skipped,
    as Spark's ``_SUCCESS``/``_temporary`` and checksum files are)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory; pass the pipeline's "
                                "corpora/ or sessions/ output (or one Parquet file)")
    if path.is_file():
        return [path]
    files = sorted(
        (p for p in path.rglob("*.parquet")
         if p.is_file() and not any(part[:1] in "_." for part in p.relative_to(path).parts)),
        key=lambda p: p.relative_to(path).as_posix(),
    )
    if not files:
        raise ValueError(f"{path}: no *.parquet files in this directory; point --sessions at the "
                         "pipeline's corpora/ or sessions/ output (dt=YYYY-MM-DD/*.parquet)")
    return files


def shard_files(files: Sequence[Path], rank: int, world: int) -> list[Path]:
    """Files ``rank, rank + world, ...``: disjoint across ranks, together all of ``files``."""
    if not (world >= 1 and 0 <= rank < world):
        raise ValueError(f"rank must be in [0, world) with world >= 1; got rank={rank!r}, "
                         f"world={world!r}")
    return list(files[rank::world])


@dataclass(frozen=True)
class TokenBatch:
    """One record batch's sessions as filtered flat tokens plus per-session side columns."""

    values: np.ndarray  # (n,) object: token strings, filtered
    owner: np.ndarray  # (n,) int64: session index within the batch
    n_sessions: int
    booked: np.ndarray | None  # (n_sessions,) object: booked token or None; None = unused
    market: np.ndarray | None  # (n_sessions,) object: session market or None; None = no column


class SessionTokens(Protocol):
    """Turns record batches of one table into tokens (items of clicks, or queries)."""

    @property
    def column(self) -> str:
        """The list column the tokens come from (required in every file)."""
        ...

    def columns(self, available: Sequence[str]) -> list[str]:
        """The columns to read from a file with ``available`` columns."""
        ...

    def tokens(self, batch: pa.RecordBatch) -> TokenBatch:
        ...


def _objects(batch: pa.RecordBatch, name: str) -> np.ndarray | None:
    if name not in batch.schema.names:
        return None
    return np.asarray(batch.column(name).to_pylist(), dtype=object)


@dataclass(frozen=True)
class ItemTokens:
    """Click sessions as ``ItemEmbeddings`` filters them (``build_corpus`` on ``items``)."""

    min_dwell_ms: int = 0
    use_booked: bool = True
    column: str = "items"

    def columns(self, available: Sequence[str]) -> list[str]:
        wanted = ["items", "market"]
        if self.use_booked:
            wanted.append("booked_item")
        if self.min_dwell_ms > 0:
            wanted.append("dwell_ms")
        return [c for c in wanted if c in available]

    def tokens(self, batch: pa.RecordBatch) -> TokenBatch:
        values, owner, booked = session_tokens(batch, "items", min_dwell_ms=self.min_dwell_ms,
                                               use_booked=self.use_booked)
        return TokenBatch(values.astype(object), owner, batch.num_rows, booked,
                          _objects(batch, "market"))


@dataclass(frozen=True)
class QueryTokens:
    """Query sequences as ``QueryEmbeddings`` filters them: normalized, consecutive repeats
    dropped (re-submissions), then empty ones dropped."""

    column: str = "queries"

    def columns(self, available: Sequence[str]) -> list[str]:
        return ["queries"]

    def tokens(self, batch: pa.RecordBatch) -> TokenBatch:
        values: list[str] = []
        owner: list[int] = []
        for s, qs in enumerate(batch.column("queries").to_pylist()):
            for q in query_sequence(qs):
                if q != "":
                    values.append(q)
                    owner.append(s)
        return TokenBatch(np.asarray(values, dtype=object), np.asarray(owner, dtype=np.int64),
                          batch.num_rows, None, None)


def stream(files: Sequence[Path], reader: SessionTokens,
           batch_rows: int = BATCH_ROWS) -> Iterator[TokenBatch]:
    """The token batches of ``files``, one record batch in memory at a time."""
    for path in files:
        f = pq.ParquetFile(path)
        available = f.schema_arrow.names
        if reader.column not in available:
            hint = (" (query vectors need the sessions/ table: corpora/ has no queries)"
                    if reader.column == "queries" else "")
            raise ValueError(f"{path}: no '{reader.column}' column (has {available}); point "
                             f"--sessions at the pipeline's sessions/ or corpora/ output{hint}")
        for batch in f.iter_batches(batch_size=batch_rows, columns=reader.columns(available)):
            yield reader.tokens(batch)


@dataclass(frozen=True)
class ShardCounts:
    """What the count pass keeps: ids and counts, never sessions."""

    counts: dict[str, int]
    markets: set[str]
    n_rows: int


def count_shard(files: Sequence[Path], reader: SessionTokens,
                batch_rows: int = BATCH_ROWS) -> ShardCounts:
    """Token occurrences (kept clicks or queries, plus bookings) and session markets."""
    counts: dict[str, int] = {}
    markets: set[str] = set()
    n_rows = 0
    for b in stream(files, reader, batch_rows):
        n_rows += b.n_sessions
        tokens = b.values
        if b.booked is not None:
            tokens = np.concatenate([tokens, b.booked[[x is not None for x in b.booked]]])
        if tokens.shape[0]:
            uniq, n = np.unique(tokens.astype(str), return_counts=True)
            for tok, c in zip(uniq.tolist(), n.tolist(), strict=True):
                counts[tok] = counts.get(tok, 0) + c
        if b.market is not None:
            markets.update(m for m in b.market.tolist() if m is not None)
    return ShardCounts(counts, markets, n_rows)


@dataclass(frozen=True)
class Vocabulary:
    """The merged vocabulary, identical on every process."""

    tokens: list[str]  # most frequent first, ties by token
    counts: np.ndarray  # (V,) int64, summed over all shards
    session_markets: list[str]  # sorted markets seen in any shard's sessions
    n_rows: int  # sessions read by all processes, before filtering


def _all_reduce_int(values: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.numpy()


def merge_vocabulary(local: ShardCounts, min_count: int, column: str) -> Vocabulary:
    """Union of the shards' token ids, counts summed, filtered and ordered as ``build_corpus``."""
    world = dist.get_world_size()
    ids: list[list[str]] = [[] for _ in range(world)]
    dist.all_gather_object(ids, sorted(local.counts))
    names = sorted(set().union(*ids))
    del ids
    markets: list[set[str]] = [set() for _ in range(world)]
    dist.all_gather_object(markets, local.markets)
    mine = np.fromiter((local.counts.get(t, 0) for t in names), np.int64, len(names))
    summed = _all_reduce_int(np.append(mine, local.n_rows))
    counts, n_rows = summed[:-1], int(summed[-1])
    if not names:
        raise ModelFitError(f"No '{column}' tokens left after filtering {n_rows} sessions")
    uniq = np.asarray(names, dtype=str)
    frequent = counts >= min_count
    uniq, counts = uniq[frequent], counts[frequent]
    order = np.lexsort((uniq, -counts))  # most frequent first, ties by token (build_corpus)
    return Vocabulary(uniq[order].tolist(), counts[order].astype(np.int64),
                      sorted(set().union(*markets)), n_rows)


@dataclass(frozen=True)
class ShardCorpus:
    """This process's sessions (``local``: global vocabulary, local tokens) and global sizes."""

    local: Corpus
    n_sessions: int  # kept sessions over all processes
    n_tokens: int  # kept tokens over all processes
    n_rows: int  # sessions read over all processes


def _encode(files: Sequence[Path], reader: SessionTokens, index: Mapping[str, int],
            market_code: Mapping[str, int], min_session_length: int, batch_rows: int,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, session lengths, booked ids, session market codes) of the kept sessions."""
    tokens: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    booked: list[np.ndarray] = []
    smarket: list[np.ndarray] = []
    for b in stream(files, reader, batch_rows):
        ids = np.fromiter((index.get(v, -1) for v in b.values.astype(str)), np.int32,
                          b.values.shape[0])
        ok = ids >= 0
        ids, owner = ids[ok], b.owner[ok]
        per_session = np.bincount(owner, minlength=b.n_sessions)
        session_ok = per_session >= min_session_length
        tokens.append(ids[session_ok[owner]])
        lengths.append(per_session[session_ok])
        if b.booked is not None:
            booked.append(np.array([index.get(x, -1) if x is not None else -1
                                    for x in b.booked[session_ok]], dtype=np.int32))
        else:
            booked.append(np.full(int(session_ok.sum()), -1, dtype=np.int32))
        if b.market is not None:
            smarket.append(np.array([market_code.get(m, -1) if m is not None else -1
                                     for m in b.market[session_ok]], dtype=np.int64))
        else:
            smarket.append(np.full(int(session_ok.sum()), -1, dtype=np.int64))

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return cat(tokens, np.int32), cat(lengths, np.int64), cat(booked, np.int32), \
        cat(smarket, np.int64)


def _voted_markets(tokens: np.ndarray, token_market: np.ndarray, vocab_size: int,
                   n_markets: int) -> np.ndarray:
    """Each word's most frequent session market over all shards (-1 if never seen with one)."""
    valid = token_market >= 0
    codes, n = np.unique(tokens[valid].astype(np.int64) * n_markets + token_market[valid],
                         return_counts=True)
    word_market = np.full(vocab_size, -1, dtype=np.int32)
    rows = max(1, _VOTE_CELLS // max(1, n_markets))
    for lo in range(0, vocab_size, rows):  # same chunks on every rank: sizes are global
        hi = min(vocab_size, lo + rows)
        a, z = np.searchsorted(codes, [lo * n_markets, hi * n_markets])
        flat = np.zeros((hi - lo) * n_markets, dtype=np.int64)
        np.add.at(flat, codes[a:z] - lo * n_markets, n[a:z])
        votes = _all_reduce_int(flat).reshape(hi - lo, n_markets)
        has = votes.sum(axis=1) > 0
        word_market[lo:hi][has] = votes[has].argmax(axis=1).astype(np.int32)
    return word_market


def build_shard_corpus(
    files: Sequence[Path], reader: SessionTokens, *, min_count: int = 1,
    min_session_length: int = 2, item_markets: Mapping[str, str] | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ShardCorpus:
    """Count, merge and encode this process's ``files`` (every process must call it, with
    its own files, possibly none)."""
    if not dist.is_initialized():
        raise RuntimeError("build_shard_corpus needs an initialized process group; "
                           "call funnel.distributed.ddp_rank.init_from_env()")
    vocab = merge_vocabulary(count_shard(files, reader, batch_rows), min_count, reader.column)
    index = {tok: i for i, tok in enumerate(vocab.tokens)}
    market_code = {m: i for i, m in enumerate(vocab.session_markets)}
    tokens, lengths, booked, smarket = _encode(files, reader, index, market_code,
                                               min_session_length, batch_rows)
    n_sessions, n_tokens = (int(x) for x in _all_reduce_int(
        np.array([lengths.shape[0], tokens.shape[0]])))
    if n_tokens == 0:
        raise ModelFitError(
            f"No session of {vocab.n_rows} has {min_session_length}+ '{reader.column}' tokens "
            f"after filtering (min_count={min_count})")
    v = len(vocab.tokens)
    if item_markets is not None:  # the catalog's markets, as build_corpus takes them
        markets = sorted({m for m in item_markets.values() if m is not None})
        code = {m: i for i, m in enumerate(markets)}
        word_market = np.array([code[m] if (m := item_markets.get(t)) is not None else -1
                                for t in vocab.tokens], dtype=np.int32)
    elif vocab.session_markets:
        markets = vocab.session_markets
        word_market = _voted_markets(tokens, np.repeat(smarket, lengths), v, len(markets))
    else:
        markets, word_market = [], np.full(v, -1, dtype=np.int32)
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    local = Corpus(vocab=vocab.tokens, counts=vocab.counts, tokens=tokens, offsets=offsets,
                   booked=booked, word_market=word_market, markets=markets)
    return ShardCorpus(local, n_sessions, n_tokens, vocab.n_rows)
