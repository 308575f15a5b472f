"""Click sessions -> the integer corpus the trainer reads, with the paper's filtering.

Grbovic & Cheng (2018, sec. 3.1) train on sessions of clicks with accidental clicks removed
(dwell under a threshold) and sessions of a single click dropped; the booked item is kept as the
session's global context. This module turns a ``sessions`` table (the contract columns
``items``, optionally ``dwell_ms``, ``booked_item``, ``market``) into flat arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.exceptions import ModelFitError


@dataclass(frozen=True)
class Corpus:
    """Sessions as word ids, ready for :func:`funnel.embed._sgns.train_epoch`."""

    vocab: list[str]  # word id -> token, most frequent first
    counts: np.ndarray  # (V,) int64 occurrences (clicks plus bookings)
    tokens: np.ndarray  # (N,) int32
    offsets: np.ndarray  # (S + 1,) int64
    booked: np.ndarray  # (S,) int32, -1 when the session did not book
    word_market: np.ndarray  # (V,) int32 index into ``markets`` or -1
    markets: list[str]

    @property
    def n_sessions(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])


def as_sessions_table(sessions: Any, column: str = "items") -> pa.Table:
    """Accept a pyarrow table, a DuckDB relation, or a list of token lists."""
    if isinstance(sessions, pa.Table):
        table = sessions
    elif hasattr(sessions, "to_arrow_table"):  # duckdb relation or result
        table = sessions.to_arrow_table()
    elif isinstance(sessions, Sequence) and not isinstance(sessions, str | bytes):
        rows = [list(map(str, s)) for s in sessions]
        table = pa.table({column: pa.array(rows, type=pa.list_(pa.string()))})
    else:
        raise TypeError(
            f"The 'sessions' argument must be a pyarrow Table with a '{column}' list column, "
            f"a DuckDB relation, or a list of token lists; got {type(sessions).__name__}"
        )
    if column not in table.column_names:
        raise ValueError(
            f"The 'sessions' table must have a '{column}' column; got columns {table.column_names}"
        )
    return table


def flatten_list(table: pa.Table | pa.RecordBatch, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten list column ``column``: (values, session index per value)."""
    col = table.column(column)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(col)
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths.astype(np.int64))
    return values.to_numpy(zero_copy_only=False), owner


def session_tokens(
    table: pa.Table | pa.RecordBatch, column: str, *, min_dwell_ms: int, use_booked: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The non-empty tokens of list column ``column`` with each one's session row, accidental
    clicks (``items`` with ``dwell_ms`` under ``min_dwell_ms``; unknown dwell and the booked
    item never count as accidental) dropped; and each session's booked item when
    ``use_booked`` and the table has them. One filter for the in-memory corpus and the
    distributed trainer's per-batch one."""
    values, owner = flatten_list(table, column)
    keep = np.array([v is not None and v != "" for v in values], dtype=bool)
    booked_raw: np.ndarray | None = None
    if use_booked and "booked_item" in table.column_names:
        booked_raw = table.column("booked_item").to_numpy(zero_copy_only=False)
    if min_dwell_ms > 0 and "dwell_ms" in table.column_names and column == "items":
        dwell, _ = flatten_list(table, "dwell_ms")
        if dwell.shape[0] == values.shape[0]:
            dwell = np.array([np.inf if v is None else v for v in dwell], dtype=np.float64) \
                if dwell.dtype == object else np.nan_to_num(dwell.astype(np.float64), nan=np.inf)
            short = dwell < float(min_dwell_ms)
            if booked_raw is not None:
                short &= values != booked_raw[owner]
            keep &= ~short
    return values[keep], owner[keep], booked_raw


def build_corpus(
    sessions: Any,
    *,
    column: str = "items",
    min_count: int = 1,
    min_dwell_ms: int = 0,
    min_session_length: int = 2,
    use_booked: bool = True,
    item_markets: Mapping[str, str] | None = None,
) -> Corpus:
    """Filter and encode sessions (accidental clicks, one-click sessions, rare tokens)."""
    table = as_sessions_table(sessions, column)
    n_sessions = table.num_rows
    values, owner, booked_raw = session_tokens(table, column, min_dwell_ms=min_dwell_ms,
                                               use_booked=use_booked)
    booked_tokens: np.ndarray = np.array([], dtype=object)
    if booked_raw is not None:
        booked_tokens = booked_raw[[b is not None for b in booked_raw]]
    all_tokens = np.concatenate([values.astype(object), booked_tokens.astype(object)])
    if all_tokens.shape[0] == 0:
        raise ModelFitError(f"No '{column}' tokens left after filtering {n_sessions} sessions")
    uniq, counts = np.unique(all_tokens.astype(str), return_counts=True)
    frequent = counts >= min_count
    uniq, counts = uniq[frequent], counts[frequent]
    order = np.lexsort((uniq, -counts))  # most frequent first, ties by token for determinism
    uniq, counts = uniq[order], counts[order]
    index = {tok: i for i, tok in enumerate(uniq.tolist())}
    ids = np.fromiter((index.get(v, -1) for v in values.astype(str)), np.int32, values.shape[0])
    ok = ids >= 0
    ids, owner = ids[ok], owner[ok]
    per_session = np.bincount(owner, minlength=n_sessions)
    session_ok = per_session >= min_session_length
    mask = session_ok[owner]
    ids, owner = ids[mask], owner[mask]
    lengths = per_session[session_ok]
    if ids.shape[0] == 0:
        raise ModelFitError(
            f"No session of {n_sessions} has {min_session_length}+ '{column}' tokens after "
            f"filtering (min_count={min_count}, min_dwell_ms={min_dwell_ms})"
        )
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    booked = np.full(lengths.shape[0], -1, dtype=np.int32)
    if booked_raw is not None:
        kept_booked = booked_raw[session_ok]
        booked = np.array(
            [index.get(b, -1) if b is not None else -1 for b in kept_booked], dtype=np.int32
        )
    markets, word_market = _word_markets(table, owner, ids, len(uniq), item_markets,
                                          uniq.tolist())
    return Corpus(
        vocab=uniq.tolist(), counts=counts.astype(np.int64), tokens=ids.astype(np.int32),
        offsets=offsets, booked=booked, word_market=word_market, markets=markets,
    )


def _word_markets(
    table: pa.Table,
    owner: np.ndarray,
    ids: np.ndarray,
    vocab_size: int,
    item_markets: Mapping[str, str] | None,
    vocab: list[str],
) -> tuple[list[str], np.ndarray]:
    """Each word's market: from the catalog if given, else the session market it is most seen in."""
    word_market = np.full(vocab_size, -1, dtype=np.int32)
    if item_markets is not None:
        names = sorted({m for m in item_markets.values() if m is not None})
        code = {m: i for i, m in enumerate(names)}
        for w, tok in enumerate(vocab):
            m = item_markets.get(tok)
            if m is not None:
                word_market[w] = code[m]
        return names, word_market
    if "market" not in table.column_names:
        return [], word_market
    session_market = table.column("market").to_numpy(zero_copy_only=False)
    present = [m for m in session_market if m is not None]
    if not present:
        return [], word_market
    names = sorted(set(present))
    code = {m: i for i, m in enumerate(names)}
    session_code = np.array([code.get(m, -1) if m is not None else -1 for m in session_market],
                            dtype=np.int64)
    token_market = session_code[owner]
    valid = token_market >= 0
    votes = np.zeros((vocab_size, len(names)), dtype=np.int64)
    np.add.at(votes, (ids[valid], token_market[valid]), 1)
    has = votes.sum(axis=1) > 0
    word_market[has] = votes[has].argmax(axis=1).astype(np.int32)
    return names, word_market


def normalize_query(text: str) -> str:
    """The normal form query vectors are keyed by: the one analyzer's (``funnel.text``), so a
    query typed with other case, width or punctuation finds the vector lexical recall and
    suggestion would match it to."""
    from funnel.text import normalize

    return normalize(text)


def query_sequence(queries: Sequence[str | None] | None) -> list[str]:
    """A session's queries as query vectors learn from them: normalized, blank ones dropped,
    consecutive repeats (re-submissions, not a sequence of intents) collapsed."""
    normalized = [normalize_query(q) for q in (queries or []) if q is not None and q.strip()]
    return [q for i, q in enumerate(normalized) if i == 0 or q != normalized[i - 1]]
