"""Logistic regression on hashed / encoded sparse features."""

from __future__ import annotations

import torch
from torch import nn

from funnel.rank.layers import LinearTerm
from funnel.rank.models.config import NetworkConfig


class LRNetwork(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = LinearTerm(config.num_features)

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> logits (B,)."""
        return self.linear(idx, val)
