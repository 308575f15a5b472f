"""The signed hashing trick (Weinberger et al. 2009) with MurmurHash3.

A value goes to bucket ``murmur3(value, seed) mod 2^bits`` with sign ``+-1`` from a second,
independent murmur3 hash, so collisions cancel in expectation instead of adding up.
"""

from __future__ import annotations

import mmh3
import numpy as np


def signed_hash(value: str, bits: int, seed: int = 0) -> tuple[int, float]:
    """Bucket in ``[0, 2^bits)`` and sign (+1.0 / -1.0) of one string."""
    bucket = mmh3.hash(value, seed, signed=False) & ((1 << bits) - 1)
    sign = 1.0 if mmh3.hash(value, seed + 0x9E3779B9 & 0xFFFFFFFF, signed=True) >= 0 else -1.0
    return bucket, sign


_MEMO: dict[tuple[int, int], dict[str, int]] = {}
_MEMO_LIMIT = 1 << 20


def hash_bucket(values: np.ndarray, bits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`signed_hash` over an array of strings.

    Returns ``(buckets int64 (n,), signs float32 (n,))``. Hashes are memoized per
    ``(bits, seed)`` (a pure function; serving sees the same values again and again), with the
    sign packed into the memo's integer as ``bucket * 2 + (sign < 0)``.
    """
    arr = np.asarray(values, dtype=object).ravel()
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    memo = _MEMO.setdefault((bits, seed), {})
    if len(memo) > _MEMO_LIMIT:
        memo.clear()
    get = memo.get
    packed = np.empty(n, dtype=np.int64)
    for k, v in enumerate(arr.tolist()):
        code = get(v)
        if code is None:
            # object values, never numpy 'U': fixed-width unicode drops trailing NULs
            b, sgn = signed_hash(v if isinstance(v, str) else str(v), bits, seed)
            code = memo[v] = b * 2 + (sgn < 0)
        packed[k] = code
    return packed >> 1, np.where(packed & 1, -1.0, 1.0).astype(np.float32)
