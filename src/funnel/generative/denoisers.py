"""Denoising networks (pure ``nn.Module``s, STYLE P2) and the wrappers samplers call.

Networks take ``(x, t, cond)`` and know nothing of schedules or samplers. :class:`VPDenoiser`
turns a network trained on the VP process into the ``D(x, sigma)`` the diffusion samplers expect;
:class:`CFGDenoiser` adds classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from funnel.generative.schedules import VPSchedule

PREDICTIONS = ("x0", "eps")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of continuous times ``t`` (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.to(torch.float32)[:, None] * 1000.0 * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


@dataclass(frozen=True)
class MLPConfig:
    """Shape of an :class:`MLPDenoiser`."""

    dim: int
    hidden: tuple[int, ...] = (256, 256)
    time_dim: int = 16
    cond_dim: int = 0
    dropout: float = 0.0
    activation: str = "silu"
    normalize_input: bool = False


class MLPDenoiser(nn.Module):
    """``(x, t[, cond]) -> output`` MLP with a sinusoidal time embedding (DiffRec's denoiser)."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        act: type[nn.Module] = {"silu": nn.SiLU, "tanh": nn.Tanh, "relu": nn.ReLU}[
            config.activation
        ]
        self.time_proj = nn.Linear(config.time_dim, config.time_dim)
        width = config.dim + config.time_dim + config.cond_dim
        layers: list[nn.Module] = [nn.Dropout(config.dropout)] if config.dropout else []
        for h in config.hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        layers.append(nn.Linear(width, config.dim))
        self.net = nn.Sequential(*layers)
        if config.cond_dim:
            # the learned "no condition" vector for classifier-free guidance
            self.null_cond = nn.Parameter(torch.zeros(config.cond_dim))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, dim), t (B,), cond (B, cond_dim) or None -> (B, dim)."""
        if self.config.normalize_input:
            x = nn.functional.normalize(x, dim=-1)
        parts = [x, self.time_proj(timestep_embedding(t, self.config.time_dim))]
        if self.config.cond_dim:
            if cond is None:
                cond = self.null_cond.expand(x.shape[0], -1)  # (B, cond_dim)
            parts.append(cond)
        return self.net(torch.cat(parts, dim=-1))


class VPDenoiser(nn.Module):
    """``D(x_scaled, sigma, **cond) -> x0`` for a network trained on VP states ``(x_t, t)``."""

    def __init__(self, net: nn.Module, schedule: VPSchedule, prediction: str = "x0") -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"The 'prediction' parameter must be one of {PREDICTIONS}. "
                f"Got {prediction!r} instead."
            )
        self.net = net
        self.schedule = schedule
        self.prediction = prediction

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor, **cond: torch.Tensor | None
    ) -> torch.Tensor:
        """x (B, d) in scaled coordinates, sigma (B,) -> x0 estimate (B, d)."""
        c_in = 1.0 / torch.sqrt(1.0 + sigma.to(x.dtype) ** 2)[:, None]  # sqrt(alpha_bar)
        t = self.schedule.t_of_sigma(sigma).to(x.dtype)
        out = self.net(x * c_in, t, **cond)
        if self.prediction == "x0":
            return out
        return x - sigma.to(x.dtype)[:, None] * out


class CFGDenoiser(nn.Module):
    """Classifier-free guidance: ``D_c + w (D_c - D_null)`` (Ho & Salimans 2022, eq. 6)."""

    def __init__(self, denoiser: nn.Module, guidance: float) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.guidance = guidance

    def forward(
        self, x: torch.Tensor, level: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        conditional = self.denoiser(x, level, cond=cond)
        if self.guidance == 0.0 or cond is None:
            return conditional
        unconditional = self.denoiser(x, level, cond=None)
        return conditional + self.guidance * (conditional - unconditional)


@dataclass(frozen=True)
class HistoryEncoderConfig:
    """Shape of a :class:`HistoryEncoder`."""

    input_dim: int
    dim: int = 64
    heads: int = 2
    layers: int = 1
    max_len: int = 20
    dropout: float = 0.1


class HistoryEncoder(nn.Module):
    """A small transformer over the embeddings of a user's recent items (DreamRec's encoder).

    Input is item *vectors*, not ids, so items unseen in training still encode.
    """

    def __init__(self, config: HistoryEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = nn.Linear(config.input_dim, config.dim)
        self.pos = nn.Embedding(config.max_len, config.dim)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, dim_feedforward=2 * config.dim,
            dropout=config.dropout, batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """items (B, L, input_dim) right-aligned, mask (B, L) True on real items -> (B, dim)."""
        length = items.shape[1]
        pos = torch.arange(length, device=items.device)
        h = self.proj(items) + self.pos(pos)[None, :, :]  # (B, L, dim)
        h = self.encoder(h, src_key_padding_mask=~mask)  # (B, L, dim)
        h = h.masked_fill(~mask[:, :, None], 0.0)
        pooled = h.sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp_min(1)  # (B, dim)
        return self.norm(pooled + h[:, -1, :])
