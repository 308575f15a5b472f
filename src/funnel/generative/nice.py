"""NICE: a normalizing flow of additive coupling layers (Dinh, Krueger & Bengio 2015).

``z = f(x)`` is a stack of additive couplings ``y_B = x_B + m(x_A[, cond])`` (unit Jacobian)
followed by a diagonal scaling ``exp(s)``, so the log-likelihood is exact:
``log p(x) = log N(f(x); 0, I) + sum(s)`` (paper eq. 3), and sampling is one inverse pass.
An optional condition vector is fed to every coupling network (used for recommendation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NICEConfig:
    """Shape of a :class:`NICE` flow."""

    dim: int
    couplings: int = 4
    hidden: int = 128
    depth: int = 2
    cond_dim: int = 0


class _Coupling(nn.Module):
    idx_a: torch.Tensor  # buffers: the coordinates conditioned on and the ones shifted
    idx_b: torch.Tensor

    def __init__(self, dim: int, hidden: int, depth: int, cond_dim: int, parity: int) -> None:
        super().__init__()
        # split by alternating index parity so every coordinate is transformed every 2 layers
        idx = torch.arange(dim)
        self.register_buffer("idx_a", idx[idx % 2 == parity])
        self.register_buffer("idx_b", idx[idx % 2 != parity])
        width = len(self.idx_a) + cond_dim
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, len(self.idx_b)))
        self.m = nn.Sequential(*layers)

    def shift(self, x_a: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        return self.m(x_a if cond is None else torch.cat([x_a, cond], dim=-1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        y = x.clone()
        y[:, self.idx_b] = x[:, self.idx_b] + self.shift(x[:, self.idx_a], cond)
        return y

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = y.clone()
        x[:, self.idx_b] = y[:, self.idx_b] - self.shift(y[:, self.idx_a], cond)
        return x


class NICE(nn.Module):
    """Additive-coupling flow with a final diagonal scaling layer."""

    def __init__(self, config: NICEConfig) -> None:
        super().__init__()
        if config.dim < 2:
            raise ValueError(f"NICE needs dim >= 2 to split coordinates. Got dim={config.dim}.")
        self.config = config
        self.couplings = nn.ModuleList(
            _Coupling(config.dim, config.hidden, config.depth, config.cond_dim, i % 2)
            for i in range(config.couplings)
        )
        self.log_scale = nn.Parameter(torch.zeros(config.dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, dim) -> z (B, dim)."""
        for layer in self.couplings:
            x = layer(x, cond)
        return x * torch.exp(self.log_scale)

    def inverse(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, dim) -> x (B, dim), the exact inverse of :meth:`forward`."""
        x = z * torch.exp(-self.log_scale)
        for layer in reversed(self.couplings):
            assert isinstance(layer, _Coupling)
            x = layer.inverse(x, cond)
        return x

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Exact ``log p(x)`` (B,) under a standard-normal prior: eq. 3 of the NICE paper."""
        z = self.forward(x, cond)
        log_prior = -0.5 * (z**2).sum(dim=-1) - 0.5 * self.config.dim * math.log(2 * math.pi)
        return log_prior + self.log_scale.sum()
