"""Embedding lookups from ``(idx, val)`` slots to per-field vectors."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn


class _Lookup(torch.autograd.Function):
    """Row gather whose backward is one ``index_add_`` (faster on CPU than the generic
    embedding backward, which sorts the indices)."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.num_rows = weight.shape[0]
        return weight.index_select(0, idx.reshape(-1)).view(*idx.shape, weight.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (idx,) = ctx.saved_tensors
        width = grad.shape[-1]
        out = torch.zeros(ctx.num_rows, width, dtype=grad.dtype, device=grad.device)
        out.index_add_(0, idx.reshape(-1), grad.reshape(-1, width))
        return out, None


def lookup(table: nn.Embedding, idx: torch.Tensor) -> torch.Tensor:
    """idx (...) -> rows (..., width) of ``table``; same values as ``table(idx)``."""
    if not torch.is_grad_enabled():  # nothing to differentiate: the gather alone, without
        w = table.weight  # the autograd.Function machinery (its forward is this very gather)
        return w.index_select(0, idx.reshape(-1)).view(*idx.shape, w.shape[1])
    return _Lookup.apply(table.weight, idx)


def _pool_matrix(slot_fields: tuple[int, ...], num_fields: int) -> torch.Tensor | None:
    """(M, F) 0/1 matrix summing slots into fields, or None when every field has one slot."""
    if len(slot_fields) == num_fields and list(slot_fields) == list(range(num_fields)):
        return None
    mat = torch.zeros(len(slot_fields), num_fields)
    mat[torch.arange(len(slot_fields)), torch.tensor(slot_fields)] = 1.0
    return mat


class _SlotSums:
    """Field embeddings for inference in one pass: each slot's row times its value, summed
    per field in slot order, then + 0.0 - the very floats of the lookup, product and pooling
    matmul that training differentiates through (the matmul adds each field's slots in slot
    order and only +-0 products for the other slots, so its zeros are +0), without the
    (B, M, d) intermediate or the matmul's multiply of every slot by every field."""

    def __init__(self, slot_fields: tuple[int, ...], num_fields: int) -> None:
        slots: list[list[int]] = [[] for _ in range(num_fields)]
        for m, f in enumerate(slot_fields):
            slots[f].append(m)
        self.complete = all(slots)  # a field without slots: the matmul's zeros (not here)
        self.n_slots = len(slot_fields)
        width = max((len(s) for s in slots), default=1)
        self.slots = np.zeros((num_fields, width), dtype=np.int64)  # field -> its slots
        self.counts = np.array([len(s) for s in slots], dtype=np.int64)
        for f, s in enumerate(slots):
            self.slots[f, : len(s)] = s

    def __call__(self, weight: torch.Tensor, idx: torch.Tensor, val: torch.Tensor
                 ) -> torch.Tensor | None:
        """(B, F, d) from the table and idx, val (B, M); None for input the kernel does not
        take (not CPU, other dtypes): the caller then runs the modules' ops."""
        if not (weight.device.type == idx.device.type == val.device.type == "cpu"
                and weight.dtype == val.dtype == torch.float32 and idx.dtype == torch.int64
                and idx.dim() == 2 and idx.shape == val.shape
                and idx.shape[1] == self.n_slots and weight.is_contiguous()):
            return None
        w = weight.detach().numpy()
        out = _pooled_lookup()(w, idx.contiguous().numpy(), val.contiguous().numpy(),
                               self.slots, self.counts)
        return torch.from_numpy(out)


@lru_cache(maxsize=1)
def _pooled_lookup() -> Any:
    """The kernel of :class:`_SlotSums`, compiled on first use (plain IEEE float32 multiply and
    add, in the order the torch ops apply them: numba does not fuse them without fastmath)."""
    import numba as nb

    @nb.njit(nogil=True)
    def pooled_lookup(
        w: np.ndarray, idx: np.ndarray, val: np.ndarray, slots: np.ndarray, counts: np.ndarray
    ) -> np.ndarray:
        n, n_fields, d = idx.shape[0], counts.shape[0], w.shape[1]
        out = np.empty((n, n_fields, d), np.float32)
        zero = np.float32(0.0)
        for b in range(n):
            for f in range(n_fields):
                m = slots[f, 0]
                r, v = idx[b, m], val[b, m]
                for k in range(d):
                    out[b, f, k] = w[r, k] * v
                for j in range(1, counts[f]):
                    m = slots[f, j]
                    r, v = idx[b, m], val[b, m]
                    for k in range(d):
                        t = w[r, k] * v
                        out[b, f, k] = out[b, f, k] + t
                for k in range(d):
                    out[b, f, k] = out[b, f, k] + zero
        return out

    return pooled_lookup


class FieldEmbedding(nn.Module):
    """One shared table; slot embeddings scaled by their value and summed per field."""

    def __init__(
        self, num_features: int, dim: int, slot_fields: tuple[int, ...], num_fields: int
    ) -> None:
        super().__init__()
        self.table = nn.Embedding(num_features, dim)
        nn.init.normal_(self.table.weight, std=0.01)
        pool = _pool_matrix(slot_fields, num_fields)
        self.pooled = pool is not None
        self.register_buffer("pool", pool if pool is not None else torch.zeros(0), persistent=False)
        self._sums = _SlotSums(slot_fields, num_fields) if self.pooled else None

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> field embeddings (B, F, d)."""
        sums = self._sums
        if sums is not None and sums.complete and not torch.is_grad_enabled():
            fast = sums(self.table.weight, idx, val)
            if fast is not None:
                return fast
        e = lookup(self.table, idx) * val.unsqueeze(-1)  # (B, M, d)
        if self.pooled:  # training: the matmul's backward is one more matmul
            e = torch.einsum("bmd,mf->bfd", e, self.pool)  # (B, F, d)
        return e


class FieldAwareEmbedding(nn.Module):
    """FFM table: every feature has one vector per *other* field (Juan et al. 2016)."""

    def __init__(
        self, num_features: int, dim: int, slot_fields: tuple[int, ...], num_fields: int
    ) -> None:
        super().__init__()
        self.num_fields, self.dim = num_fields, dim
        self.table = nn.Embedding(num_features, num_fields * dim)
        nn.init.normal_(self.table.weight, std=0.01)
        pool = _pool_matrix(slot_fields, num_fields)
        self.pooled = pool is not None
        self.register_buffer("pool", pool if pool is not None else torch.zeros(0), persistent=False)

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> (B, F, F, d): [b, i, j] = field i's vector towards field j."""
        b, m = idx.shape
        e = lookup(self.table, idx) * val.unsqueeze(-1)  # (B, M, F*d)
        if self.pooled:
            e = torch.einsum("bmk,mf->bfk", e, self.pool)  # (B, F, F*d)
        return e.view(b, self.num_fields, self.num_fields, self.dim)  # (B, F, F, d)
