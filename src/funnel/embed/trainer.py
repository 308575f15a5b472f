"""Drive the compiled skip-gram kernel: sampling tables, initial weights, epochs, threads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from funnel.embed._sgns import train_epoch
from funnel.embed.corpus import Corpus

EpochCallback = Callable[[int, int], None]
"""Called as ``callback(epochs_done, epochs_total)`` after each epoch (progress bars)."""


def unigram_table(counts: np.ndarray, size: int, power: float = 0.75) -> np.ndarray:
    """Word ids repeated in proportion to count**power (Mikolov et al. 2013 negative sampling)."""
    if counts.shape[0] == 0:
        return np.zeros(0, dtype=np.int32)
    weights = counts.astype(np.float64) ** power
    cum = np.cumsum(weights / weights.sum())
    points = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.minimum(np.searchsorted(cum, points), counts.shape[0] - 1).astype(np.int32)


def market_tables(
    counts: np.ndarray, word_market: np.ndarray, n_markets: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One unigram^0.75 table per market, concatenated, with their boundaries."""
    parts: list[np.ndarray] = []
    offsets = np.zeros(n_markets + 1, dtype=np.int64)
    total = max(1, int((word_market >= 0).sum()))
    for m in range(n_markets):
        words = np.flatnonzero(word_market == m)
        # each market's table is sized by its share of words, with a floor so tiny markets work
        m_size = max(1000, int(size * len(words) / total)) if len(words) else 0
        table = words[unigram_table(counts[words], m_size)] if len(words) else words
        parts.append(table.astype(np.int32))
        offsets[m + 1] = offsets[m] + len(table)
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return flat.astype(np.int32), offsets


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """Frequency subsampling keep probability per word (word2vec C / gensim formula)."""
    if sample <= 0:
        return np.ones(counts.shape[0], dtype=np.float32)
    total = float(counts.sum())
    threshold = sample * total
    freq = counts.astype(np.float64)
    keep = (np.sqrt(freq / threshold) + 1.0) * threshold / freq
    return np.minimum(keep, 1.0).astype(np.float32)


def table_size(vocab_size: int) -> int:
    return int(min(max(100_000, 50 * vocab_size), 10_000_000))


@dataclass(frozen=True)
class SamplingTables:
    """What one epoch reads besides the corpus: negative tables, subsampling, booked contexts.

    Built from the whole corpus's counts, so every shard of a data-parallel run (see
    ``funnel.distributed.train_embed``) samples from the same distributions.
    """

    neg: np.ndarray
    mkt: np.ndarray
    mkt_offsets: np.ndarray
    word_market: np.ndarray
    booked: np.ndarray
    keep: np.ndarray


def sampling_tables(
    corpus: Corpus, *, market_negatives: int, use_booked: bool, sample: float
) -> SamplingTables:
    """The unigram, per-market and keep-probability tables of ``corpus``."""
    vocab_size = len(corpus.vocab)
    size = table_size(vocab_size)
    neg = unigram_table(corpus.counts, size)
    if market_negatives > 0 and corpus.markets:
        mkt, mkt_off = market_tables(corpus.counts, corpus.word_market, len(corpus.markets), size)
    else:
        mkt, mkt_off = np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
    word_market = corpus.word_market if corpus.markets else np.full(vocab_size, -1, np.int32)
    booked = corpus.booked if use_booked else np.full_like(corpus.booked, -1)
    return SamplingTables(neg, mkt, mkt_off, word_market, booked,
                          keep_probabilities(corpus.counts, sample))


def initial_weights(vocab_size: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """word2vec's start: small uniform input vectors, zero output vectors (same per seed)."""
    rng = np.random.default_rng(seed)
    w_in = ((rng.random((vocab_size, dim), dtype=np.float32) - 0.5) / dim).astype(np.float32)
    return w_in, np.zeros((vocab_size, dim), dtype=np.float32)


def train_skipgram(
    corpus: Corpus,
    *,
    dim: int,
    window: int,
    negatives: int,
    market_negatives: int,
    use_booked: bool,
    epochs: int,
    learning_rate: float,
    min_learning_rate: float,
    sample: float,
    n_threads: int,
    seed: int,
    callback: EpochCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train input and output vectors on ``corpus``; returns (w_in, w_out), each (V, dim)."""
    w_in, w_out = initial_weights(len(corpus.vocab), dim, seed)
    t = sampling_tables(corpus, market_negatives=market_negatives, use_booked=use_booked,
                        sample=sample)
    previous = numba.get_num_threads()
    most = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # set at import from env
    numba.set_num_threads(max(1, min(n_threads, most)))
    # a few blocks per thread balance uneven session lengths; with one thread, one block
    n_blocks = 1 if n_threads == 1 else max(1, min(corpus.n_sessions, 8 * n_threads))
    try:
        for epoch in range(epochs):
            train_epoch(
                corpus.tokens, corpus.offsets, t.booked, t.word_market, t.keep, t.neg, t.mkt,
                t.mkt_offsets, w_in, w_out, window, negatives, market_negatives, learning_rate,
                min_learning_rate, epoch, epochs, seed, n_blocks,
            )
            if callback is not None:
                callback(epoch + 1, epochs)
    finally:
        numba.set_num_threads(previous)
    return w_in, w_out


def warm_up() -> None:
    """Compile (or load from cache) the kernel on a tiny corpus, outside any timing."""
    corpus = Corpus(
        vocab=["a", "b", "c"], counts=np.array([3, 2, 1]),
        tokens=np.array([0, 1, 2, 0, 1], np.int32),
        offsets=np.array([0, 3, 5], np.int64), booked=np.array([1, -1], np.int32),
        word_market=np.array([0, 0, 0], np.int32), markets=["m"],
    )
    train_skipgram(
        corpus, dim=4, window=2, negatives=2, market_negatives=1, use_booked=True, epochs=1,
        learning_rate=0.025, min_learning_rate=1e-4, sample=0.0, n_threads=1, seed=0,
    )
