"""DCN-V2 (Wang et al., WWW 2021), parallel form: cross network and MLP over the embeddings."""

from __future__ import annotations

import torch
from torch import nn

from funnel.rank.layers import MLP, CrossNetV2, FieldEmbedding, LinearTerm
from funnel.rank.models.config import NetworkConfig


class DCNv2Network(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        dim = c.num_fields * c.embedding_dim
        self.linear = LinearTerm(c.num_features)
        self.embedding = FieldEmbedding(
            c.num_features, c.embedding_dim, c.slot_fields, c.num_fields
        )
        self.cross = CrossNetV2(dim, c.num_cross_layers)
        self.deep = MLP(dim, c.hidden_units, c.dropout, out_dim=0)
        self.head = nn.Linear(dim + self.deep.out_dim, 1)

    def forward(self, idx: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
        """idx, val (B, M) -> logits (B,)."""
        x0 = self.embedding(idx, val).flatten(1)  # (B, F*d)
        both = torch.cat([self.cross(x0), self.deep(x0)], dim=1)  # (B, F*d + h)
        return self.linear(idx, val) + self.head(both).squeeze(-1)
