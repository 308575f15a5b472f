"""DeepFM (Guo et al., IJCAI 2017): FM and an MLP sharing one embedding table."""

from __future__ import annotations

import torch
from torch import nn

from funnel.rank.layers import MLP, FieldEmbedding, FMInteraction, LinearTerm
from funnel.rank.models.config import NetworkConfig


class DeepFMNetwork(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.linear = LinearTerm(c.num_features)
        self.embedding = FieldEmbedding(
            c.num_features, c.embedding_dim, c.slot_fields, c.num_fields
        )
        self.fm = FMInteraction(c.fm_fields)
        self.deep = MLP(c.num_fields * c.embedding_dim, c.hidden_units, c.dropout)

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> logits (B,)."""
        emb = self.embedding(idx, val)  # (B, F, d)
        deep = self.deep(emb.flatten(1)).squeeze(-1)  # (B, F*d) -> (B,)
        return self.linear(idx, val) + self.fm(emb) + deep
