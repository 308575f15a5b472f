"""Skip-gram with negative sampling, compiled with numba (Hogwild over sessions).

One epoch is one call of :func:`train_epoch`. Sessions are split into contiguous blocks and the
blocks run in parallel (``prange``) on shared weight matrices without locks (Hogwild, Recht et al.
2011): sessions are short and vocabularies large, so collisions are rare and harmless. Each
session draws its random numbers from its own generator seeded by ``(seed, epoch, session)``,
so one thread gives bit-identical results run after run, whatever the block split.

Objective per (centre, context) pair, Mikolov et al. 2013 with the additions of Grbovic & Cheng
(KDD 2018, eq. 3-4): ``negatives`` global negatives from the unigram^0.75 table, plus
``market_negatives`` drawn from the table of the centre item's own market; and, for a booked
session, the booked item as a global context of every centre item, window or not.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_MAX_EXP = np.float32(6.0)
_LCG_MUL = np.uint64(25214903917)
_LCG_ADD = np.uint64(11)


@njit(cache=True, inline="always")
def _splitmix(x: np.uint64) -> np.uint64:
    """Scramble a 64-bit integer (splitmix64 finaliser) into a well-mixed seed."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True, fastmath=True, inline="always")
def _pair(
    w_in: np.ndarray,
    w_out: np.ndarray,
    centre: int,
    context: int,
    neg_table: np.ndarray,
    n_neg: int,
    mkt_table: np.ndarray,
    mkt_lo: int,
    mkt_hi: int,
    n_mkt_neg: int,
    lr: np.float32,
    neu1e: np.ndarray,
    state: np.uint64,
) -> np.uint64:
    """One positive pair plus its negatives; returns the advanced random state."""
    dim = w_in.shape[1]
    one = np.float32(1.0)
    for j in range(dim):
        neu1e[j] = 0.0
    total = 1 + n_neg + (n_mkt_neg if mkt_hi > mkt_lo else 0)
    for k in range(total):
        if k == 0:
            target = context
            label = one
        else:
            state = state * _LCG_MUL + _LCG_ADD
            r = np.int64(state >> np.uint64(16))
            if k <= n_neg:
                target = neg_table[r % neg_table.shape[0]]
            else:
                target = mkt_table[mkt_lo + r % (mkt_hi - mkt_lo)]
            if target == context:
                continue
            label = np.float32(0.0)
        # float32 throughout so LLVM vectorizes the two loops over dim
        f = np.float32(0.0)
        for j in range(dim):
            f += w_in[centre, j] * w_out[target, j]
        if f > _MAX_EXP:
            g = (label - one) * lr
        elif f < -_MAX_EXP:
            g = label * lr
        else:
            g = (label - one / (one + np.exp(-f))) * lr
        for j in range(dim):
            neu1e[j] += g * w_out[target, j]
            w_out[target, j] += g * w_in[centre, j]
    for j in range(dim):
        w_in[centre, j] += neu1e[j]
    return state


@njit(cache=True, parallel=True, fastmath=True)
def train_epoch(
    tokens: np.ndarray,  # (n_tokens,) int32 word ids, sessions concatenated
    offsets: np.ndarray,  # (n_sessions + 1,) int64 session boundaries in tokens
    booked: np.ndarray,  # (n_sessions,) int32 booked word id or -1
    word_market: np.ndarray,  # (vocab,) int32 market id or -1
    keep_prob: np.ndarray,  # (vocab,) float32 frequency-subsampling keep probability
    neg_table: np.ndarray,  # (T,) int32 global unigram^0.75 table
    mkt_table: np.ndarray,  # (sum T_m,) int32 per-market tables, concatenated
    mkt_offsets: np.ndarray,  # (n_markets + 1,) int64 boundaries in mkt_table
    w_in: np.ndarray,  # (vocab, dim) float32, updated in place
    w_out: np.ndarray,  # (vocab, dim) float32, updated in place
    window: int,
    n_neg: int,
    n_mkt_neg: int,
    lr_start: float,
    lr_end: float,
    epoch: int,
    epochs: int,
    seed: int,
    n_blocks: int,
) -> int:
    """Train one epoch in place; returns the number of tokens kept after subsampling."""
    n_sessions = offsets.shape[0] - 1
    n_tokens = offsets[n_sessions]
    dim = w_in.shape[1]
    max_len = 0
    for s in range(n_sessions):
        max_len = max(max_len, offsets[s + 1] - offsets[s])
    kept_count = np.zeros(n_blocks, dtype=np.int64)
    denom = max(1.0, float(epochs) * float(n_tokens))
    for b in prange(n_blocks):
        s_lo = (n_sessions * b) // n_blocks
        s_hi = (n_sessions * (b + 1)) // n_blocks
        kept = np.empty(max_len, dtype=np.int32)
        neu1e = np.empty(dim, dtype=np.float32)
        for s in range(s_lo, s_hi):
            key = (np.uint64(seed) * np.uint64(1000003) + np.uint64(epoch)) * np.uint64(
                2654435761
            ) + np.uint64(s)
            state = _splitmix(key)
            progress = (float(epoch) * float(n_tokens) + float(offsets[s])) / denom
            lr = np.float32(lr_start - (lr_start - lr_end) * progress)
            n = 0
            for i in range(offsets[s], offsets[s + 1]):
                w = tokens[i]
                p = keep_prob[w]
                if p < 1.0:
                    state = state * _LCG_MUL + _LCG_ADD
                    u = float(state >> np.uint64(11)) / 9007199254740992.0
                    if u > p:
                        continue
                kept[n] = w
                n += 1
            kept_count[b] += n
            bk = booked[s]
            for pos in range(n):
                centre = kept[pos]
                m = word_market[centre]
                lo = 0
                hi = 0
                if n_mkt_neg > 0 and m >= 0:
                    lo = mkt_offsets[m]
                    hi = mkt_offsets[m + 1]
                state = state * _LCG_MUL + _LCG_ADD
                shrink = np.int64(state >> np.uint64(16)) % window
                span = int(window - shrink)
                for q in range(max(0, pos - span), min(n, pos + span + 1)):
                    if q == pos:
                        continue
                    state = _pair(
                        w_in, w_out, centre, kept[q], neg_table, n_neg,
                        mkt_table, lo, hi, n_mkt_neg, lr, neu1e, state,
                    )
                if bk >= 0 and bk != centre:
                    state = _pair(
                        w_in, w_out, centre, bk, neg_table, n_neg,
                        mkt_table, lo, hi, n_mkt_neg, lr, neu1e, state,
                    )
    return int(kept_count.sum())
