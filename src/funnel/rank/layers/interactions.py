"""Feature-interaction layers: FM inner products, field-aware pairs, cross network v2."""

from __future__ import annotations

import torch
from torch import nn


class FMInteraction(nn.Module):
    """Second-order FM term via the O(F d) identity 0.5 * ((sum v)^2 - sum v^2) (Rendle 2010).

    ``fields`` restricts the pairs to those fields (empty = all fields).
    """

    fields: torch.Tensor  # buffer

    def __init__(self, fields: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.select = bool(fields)
        self.register_buffer("fields", torch.tensor(fields, dtype=torch.int64), persistent=False)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """emb (B, F, d) -> (B,)."""
        if self.select:
            emb = emb.index_select(1, self.fields)
        square_of_sum = emb.sum(1).pow(2)  # (B, d)
        sum_of_square = emb.pow(2).sum(1)  # (B, d)
        return 0.5 * (square_of_sum - sum_of_square).sum(1)


class FieldAwareInteraction(nn.Module):
    """FFM pairs: sum over i<j of <v_{i, f_j}, v_{j, f_i}> (Juan et al. 2016)."""

    upper: torch.Tensor  # buffer

    def __init__(self, num_fields: int) -> None:
        super().__init__()
        self.register_buffer(
            "upper", torch.triu(torch.ones(num_fields, num_fields), diagonal=1), persistent=False
        )

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """emb (B, F, F, d) -> (B,)."""
        pairs = (emb * emb.transpose(1, 2)).sum(-1)  # (B, F, F): <e[i, j], e[j, i]>
        return (pairs * self.upper).sum((1, 2))


class CrossNetV2(nn.Module):
    """DCN-V2 cross layers x_{l+1} = x_0 * (W_l x_l + b_l) + x_l (Wang et al. 2021)."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        layers = [nn.Linear(dim, dim) for _ in range(num_layers)]
        for layer in layers:
            nn.init.zeros_(layer.bias)
        self.layers = nn.ModuleList(layers)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 (B, D) -> (B, D)."""
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x
