"""Per-request work runs on one intra-op thread, and the previous counts come back after."""

from __future__ import annotations

import faiss
import torch

from funnel.compute_threads import threads_limited


def test_threads_limited_sets_one_and_restores() -> None:
    torch.set_num_threads(2)
    faiss.omp_set_num_threads(2)
    with threads_limited(1):
        assert torch.get_num_threads() == 1
        assert faiss.omp_get_max_threads() == 1
    assert torch.get_num_threads() == 2
    assert faiss.omp_get_max_threads() == 2


def test_threads_come_back_after_an_error() -> None:
    torch.set_num_threads(2)
    try:
        with threads_limited(1):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert torch.get_num_threads() == 2
