"""DIN (Zhou et al., KDD 2018): target attention over the user's behaviour sequence, on top of
DeepFM's linear, FM and MLP terms over the other fields (so DIN vs DeepFM measures the
sequence alone)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from funnel.rank.layers import MLP, FieldEmbedding, FMInteraction, LinearTerm, TargetAttention
from funnel.rank.layers.embeddings import lookup


@dataclass(frozen=True)
class DINConfig:
    num_features: int
    num_fields: int
    slot_fields: tuple[int, ...]
    history_fields: tuple[int, int, int]
    """Fields of the history's item ids, event kinds and ages (``max_len`` slots each)."""
    item_field: int
    """The candidate's item-id field, whose table rows the history's ids share."""
    item_shift: int
    """Row of a history id in the candidate's range = its encoded index + this."""
    embedding_dim: int = 8
    hidden_units: tuple[int, ...] = (64, 32)
    attention_units: tuple[int, ...] = (32,)
    dropout: float = 0.0
    fm_fields: tuple[int, ...] = ()
    """Fields in the FM pairs, among the non-history fields (empty = all of them)."""


class DINNetwork(nn.Module):
    other: torch.Tensor  # buffer: the slots of the non-history fields

    def __init__(self, config: DINConfig) -> None:
        super().__init__()
        self.config = c = config
        hist = set(c.history_fields)
        other = [f for f in range(c.num_fields) if f not in hist]  # fields in input order
        local = {f: k for k, f in enumerate(other)}
        slots = [m for m, f in enumerate(c.slot_fields) if f not in hist]
        self.register_buffer("other", torch.tensor(slots, dtype=torch.int64), persistent=False)
        # the history fields last (DINRanker appends them): the other slots are a leading view
        self.head = len(slots) if slots == list(range(len(slots))) else 0
        self.starts = tuple(c.slot_fields.index(f) for f in c.history_fields)
        self.length = c.slot_fields.count(c.history_fields[0])
        self.item = local[c.item_field]
        d = c.embedding_dim
        self.linear = LinearTerm(c.num_features)
        self.embedding = FieldEmbedding(
            c.num_features, d, tuple(local[c.slot_fields[m]] for m in slots), len(other))
        self.fm = FMInteraction(tuple(local[f] for f in c.fm_fields))
        self.attention = TargetAttention(d, c.attention_units)
        self.deep = MLP(len(other) * d + 3 * d, c.hidden_units, c.dropout)

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> logits (B,)."""
        if self.head:
            o_idx, o_val = idx[:, : self.head], val[:, : self.head]
        else:
            o_idx, o_val = idx.index_select(1, self.other), val.index_select(1, self.other)
        emb = self.embedding(o_idx, o_val)  # (B, F', d)
        cand = emb[:, self.item]  # (B, d): the candidate's id row (value 1)
        (si, sk, sa), n = self.starts, self.length
        items, kinds, ages = idx[:, si : si + n], idx[:, sk : sk + n], idx[:, sa : sa + n]
        mask = val[:, si : si + n]  # (B, N): 1 = an action, 0 = padding
        tail = (idx[:, self.head :], val[:, self.head :]) if self.head else (
            items, kinds, ages, mask)
        if not torch.is_grad_enabled() and _one_history(*tail):
            items, kinds, ages, mask = items[:1], kinds[:1], ages[:1], mask[:1]  # a request
        table = self.embedding.table
        h = (lookup(table, items + self.config.item_shift) + lookup(table, kinds)
             + lookup(table, ages))  # (B|1, N, d)
        pooled = self.attention(h, cand, mask)  # (B, d)
        profile = (mask.unsqueeze(1) @ h).squeeze(1) / mask.sum(1, keepdim=True).clamp(min=1)
        x = torch.cat([emb.flatten(1), pooled, profile.expand_as(pooled), pooled * cand], 1)
        return self.linear(o_idx, o_val) + self.fm(emb) + self.deep(x).squeeze(-1)


def _one_history(*parts: torch.Tensor) -> bool:
    """Whether every row holds the first row's history (the candidates of one request)."""
    return parts[0].shape[0] > 1 and all(torch.equal(p, p[:1].expand_as(p)) for p in parts)
