"""Embedding lookups from ``(idx, val)`` slots to per-field vectors."""

from __future__ import annotations

from typing import Any

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
    return _Lookup.apply(table.weight, idx)  # type: ignore[no-any-return]


def _pool_matrix(slot_fields: tuple[int, ...], num_fields: int) -> torch.Tensor | None:
    """(M, F) 0/1 matrix summing slots into fields, or None when every field has one slot."""
    if len(slot_fields) == num_fields and list(slot_fields) == list(range(num_fields)):
        return None
    mat = torch.zeros(len(slot_fields), num_fields)
    mat[torch.arange(len(slot_fields)), torch.tensor(slot_fields)] = 1.0
    return mat


class _SlotSums:
    """Field sums of slot embeddings by gathers and in-order adds, for inference: the same
    floats as the pooling matmul (which adds each field's slots in slot order, and adds only
    +-0 products for the other slots, so its zeros are +0) at a fraction of its work (a
    matmul multiplies every slot by every field: 36x the adds for 36 fields)."""

    def __init__(self, slot_fields: tuple[int, ...], num_fields: int) -> None:
        slots: list[list[int]] = [[] for _ in range(num_fields)]
        for m, f in enumerate(slot_fields):
            slots[f].append(m)
        self.complete = all(slots)  # a field without slots: the matmul's zeros (not here)
        self.first = torch.tensor([s[0] if s else 0 for s in slots], dtype=torch.int64)
        # fields of several slots, longest first: the fields with a j-th slot are a prefix
        multi = sorted((f for f in range(num_fields) if len(slots[f]) > 1),
                       key=lambda f: -len(slots[f]))
        self.multi = torch.tensor(multi, dtype=torch.int64)
        self.later = [  # j >= 1 -> the j-th slot of each field that has one
            torch.tensor([slots[f][j] for f in multi if len(slots[f]) > j], dtype=torch.int64)
            for j in range(1, max((len(s) for s in slots), default=1))
        ]

    def __call__(self, e: torch.Tensor) -> torch.Tensor:
        """e (B, M, d) -> (B, F, d)."""
        out = e.index_select(1, self.first)
        if len(self.multi):
            acc = out.index_select(1, self.multi)
            for take in self.later:
                acc[:, : len(take)] += e.index_select(1, take)
            out.index_copy_(1, self.multi, acc)
        return out.add_(0.0)  # -0 -> +0, as the matmul gives


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
        e = lookup(self.table, idx) * val.unsqueeze(-1)  # (B, M, d)
        if self.pooled:
            sums = self._sums
            if torch.is_grad_enabled() or sums is None or not sums.complete:
                # training: the matmul's backward is one more matmul
                e = torch.einsum("bmd,mf->bfd", e, self.pool)  # (B, F, d)
            else:
                e = sums(e)
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
