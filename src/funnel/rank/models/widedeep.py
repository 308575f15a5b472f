"""Wide & Deep (Cheng et al. 2016): a linear wide part plus an MLP over field embeddings."""

from __future__ import annotations

import torch
from torch import nn

from funnel.rank.layers import MLP, FieldEmbedding, LinearTerm
from funnel.rank.models.config import NetworkConfig


class WideDeepNetwork(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.linear = LinearTerm(c.num_features)
        self.embedding = FieldEmbedding(
            c.num_features, c.embedding_dim, c.slot_fields, c.num_fields
        )
        self.deep = MLP(c.num_fields * c.embedding_dim, c.hidden_units, c.dropout)

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> logits (B,)."""
        emb = self.embedding(idx, val)  # (B, F, d)
        return self.linear(idx, val) + self.deep(emb.flatten(1)).squeeze(-1)  # (B,)
