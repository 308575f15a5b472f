"""Factorization machine (Rendle 2010): linear term + factorized pairwise interactions."""

from __future__ import annotations

import torch
from torch import nn

from funnel.rank.layers import FieldEmbedding, FMInteraction, LinearTerm
from funnel.rank.models.config import NetworkConfig


class FMNetwork(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.linear = LinearTerm(c.num_features)
        self.embedding = FieldEmbedding(
            c.num_features, c.embedding_dim, c.slot_fields, c.num_fields
        )
        self.fm = FMInteraction(c.fm_fields)

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> logits (B,)."""
        return self.linear(idx, val) + self.fm(self.embedding(idx, val))
