"""Inference pools slots into fields by gathers and in-order adds: the very floats (signed
zeros included) of the pooling matmul that training differentiates through."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from funnel.rank.layers.embeddings import FieldEmbedding, _SlotSums


def _bits(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().view(np.int32)


@pytest.mark.parametrize("slot_fields,num_fields", [
    ((0, 1, 1, 1, 1, 2, 3, 3, 4), 5),  # one sequence field of 4 slots, one of 2
    ((0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 4, 4), 5),  # longest field not first
    ((0, 1, 2), 3),  # one slot per field: no pooling at all
])
def test_inference_pooling_is_the_matmul_bit_for_bit(slot_fields, num_fields) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    emb = FieldEmbedding(50, 8, slot_fields, num_fields)
    idx = torch.randint(0, 50, (257, len(slot_fields)))
    val = torch.randn(257, len(slot_fields))
    val[::3, 0] = 0.0  # zero values: -0 products, which the matmul turns into +0
    val[:, -1] = 0.0
    with torch.no_grad():
        e = emb.table.weight.index_select(0, idx.reshape(-1)).view(*idx.shape, 8)
        e = e * val.unsqueeze(-1)
        fast = emb(idx, val)  # no grad: the gather path
    if emb.pooled:
        reference = torch.einsum("bmd,mf->bfd", e, emb.pool)
        np.testing.assert_array_equal(_bits(fast), _bits(reference))
        assert not torch.signbit(fast[fast == 0]).any()
    else:
        np.testing.assert_array_equal(_bits(fast), _bits(e))


def test_training_keeps_the_matmul_and_its_gradient() -> None:
    torch.manual_seed(0)
    emb = FieldEmbedding(20, 4, (0, 1, 1, 2), 3)
    idx = torch.randint(0, 20, (16, 4))
    val = torch.rand(16, 4)
    out = emb(idx, val)  # grad enabled: the einsum path
    assert out.requires_grad and out.shape == (16, 3, 4)
    out.sum().backward()
    assert emb.table.weight.grad is not None and emb.table.weight.grad.abs().sum() > 0
    with torch.no_grad():
        again = emb(idx, val)
    np.testing.assert_array_equal(_bits(again), _bits(out.detach() + 0.0))


def test_a_field_without_slots_keeps_the_matmul() -> None:
    sums = _SlotSums((0, 0, 2), 3)  # field 1 has no slot: its sum is zeros
    assert not sums.complete
    emb = FieldEmbedding(10, 4, (0, 0, 2), 3)
    with torch.no_grad():
        out = emb(torch.tensor([[1, 2, 3]]), torch.ones(1, 3))
    assert torch.equal(out[0, 1], torch.zeros(4))
