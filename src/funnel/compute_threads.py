"""Intra-op threads for per-request work: one, as the server runs, unless told otherwise.

A request scores a few hundred rows; torch's and faiss's OpenMP threads gain nothing on batches
that small and spin after each call, taking the core another request needs. Measured on the
generative recall source (a 10-step DDIM over a 2-layer history encoder, 2 cores under load):
65 ms of CPU per request with 2 threads, 5.5 ms with 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def limit_threads(n: int) -> None:
    """Set torch's and faiss's intra-op threads to ``n`` for this process."""
    import faiss
    import torch

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


@contextmanager
def threads_limited(n: int = 1) -> Iterator[None]:
    """:func:`limit_threads` inside the block, the previous counts restored after it (an
    offline replay asks the engine as the server would, then training may go on)."""
    import faiss
    import torch

    before_torch, before_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    limit_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        faiss.omp_set_num_threads(before_faiss)
