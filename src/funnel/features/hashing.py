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


def hash_bucket(values: np.ndarray, bits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`signed_hash` over an array of strings (each distinct value hashed once).

    Returns ``(buckets int64 (n,), signs float32 (n,))``.
    """
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    # object dtype, not numpy 'U': fixed-width unicode silently drops trailing NUL characters
    arr = np.array([v if isinstance(v, str) else str(v) for v in arr.ravel()], dtype=object)
    uniq, inverse = np.unique(arr, return_inverse=True)
    table = [signed_hash(str(v), bits, seed) for v in uniq]
    buckets = np.fromiter((b for b, _ in table), dtype=np.int64, count=len(table))
    signs = np.fromiter((s for _, s in table), dtype=np.float32, count=len(table))
    return buckets[inverse], signs[inverse]
