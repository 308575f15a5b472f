"""Field-aware factorization machine (Juan et al., RecSys 2016)."""

from __future__ import annotations

import torch
from torch import nn

from funnel.rank.layers import FieldAwareEmbedding, FieldAwareInteraction, LinearTerm
from funnel.rank.models.config import NetworkConfig


class FFMNetwork(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.linear = LinearTerm(c.num_features)
        self.embedding = FieldAwareEmbedding(
            c.num_features, c.embedding_dim, c.slot_fields, c.num_fields
        )
        self.ffm = FieldAwareInteraction(c.num_fields)

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> logits (B,)."""
        return self.linear(idx, val) + self.ffm(self.embedding(idx, val))
