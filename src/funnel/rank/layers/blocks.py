"""Small dense blocks: the first-order (LR) term and the MLP tower."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from funnel.rank.layers.embeddings import lookup


class LinearTerm(nn.Module):
    """Logistic-regression term ``b + sum_m w[idx_m] * val_m`` over sparse slots."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.weight = nn.Embedding(num_features, 1)
        nn.init.zeros_(self.weight.weight)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> logit (B,)."""
        return (lookup(self.weight, idx).squeeze(-1) * val).sum(1) + self.bias  # (B,)


class MLP(nn.Module):
    """ReLU tower; ``out_dim=0`` leaves the last hidden layer as the output."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], dropout: float = 0.0, out_dim: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = h
        if out_dim:
            layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim or in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_dim) -> (B, out_dim)."""
        return self.net(x)
