"""Noise schedules of the variance-preserving (VP) diffusion, and the sigma grids samplers walk.

A VP schedule gives ``alpha_bar(t)`` for continuous ``t`` in ``[0, 1]`` so that
``x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps``. Samplers do not see the schedule: they
walk a decreasing grid of noise levels ``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` on the scaled
state ``x / sqrt(alpha_bar)`` (Karras et al. 2022, eq. 4 with ``s(t) = sqrt(alpha_bar)``), which is
the same process written in coordinates where DDIM, the reverse SDE and the probability-flow ODE
become one-liners. :class:`VPDenoiser` translates back to the network's ``(x_t, t)`` view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULE_KINDS = ("linear", "cosine")


@dataclass(frozen=True)
class VPSchedule:
    """A continuous-time VP noise schedule.

    ``linear`` is Song et al. (2021)'s ``beta(t) = beta_min + t (beta_max - beta_min)``;
    ``cosine`` is Nichol & Dhariwal (2021). ``scale`` multiplies the integrated noise
    (``-log alpha_bar``): DiffRec's "small noise scale" is ``scale`` well below 1.
    """

    kind: str = "linear"
    beta_min: float = 0.1
    beta_max: float = 20.0
    cosine_s: float = 0.008
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(
                f"The 'kind' parameter must be one of {SCHEDULE_KINDS}. Got {self.kind!r} instead."
            )
        if not (0 < self.beta_min < self.beta_max):
            raise ValueError(
                "beta_min and beta_max must satisfy 0 < beta_min < beta_max. Got "
                f"beta_min={self.beta_min!r}, beta_max={self.beta_max!r} instead."
            )
        if not self.scale > 0:
            raise ValueError(f"The 'scale' parameter must be > 0. Got {self.scale!r} instead.")

    # -log alpha_bar(t), the integrated noise; everything else derives from it.
    def neg_log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """``-log alpha_bar(t)`` (>= 0, increasing in t)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if self.kind == "linear":
            out = self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        else:
            s = self.cosine_s
            f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
            f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
            out = -torch.log((f / f0).clamp_min(1e-12))
        return self.scale * out

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.neg_log_alpha_bar(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """``sqrt((1 - alpha_bar) / alpha_bar)``: the noise level in scaled coordinates."""
        return torch.sqrt(torch.expm1(self.neg_log_alpha_bar(t)))

    def t_of_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`sigma` (so a network conditioned on ``t`` can be driven by sigma)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        big_l = torch.log1p(sigma**2) / self.scale  # -log alpha_bar / scale
        if self.kind == "linear":
            d = self.beta_max - self.beta_min
            return (-self.beta_min + torch.sqrt(self.beta_min**2 + 2 * d * big_l)) / d
        s = self.cosine_s
        f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
        c = torch.sqrt((torch.exp(-big_l) * f0).clamp(0.0, 1.0))
        return torch.arccos(c) * 2 / math.pi * (1 + s) - s


def get_timesteps(steps: int, t_start: float = 1.0, t_end: float = 0.0) -> torch.Tensor:
    """``steps + 1`` evenly spaced times from ``t_start`` down to ``t_end``."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"The 'steps' parameter must be an int >= 1. Got {steps!r} instead.")
    if not 0.0 <= t_end < t_start <= 1.0:
        raise ValueError(
            f"Need 0 <= t_end < t_start <= 1. Got t_start={t_start!r}, t_end={t_end!r} instead."
        )
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64)


def get_sigmas(schedule: VPSchedule, steps: int, t_start: float = 1.0) -> torch.Tensor:
    """The decreasing sigma grid for ``steps`` sampler steps from ``t_start``; ends at 0."""
    ts = get_timesteps(steps, t_start)
    sigmas = schedule.sigma(ts)
    sigmas[-1] = 0.0
    return sigmas.to(torch.float32)


def get_flow_times(steps: int, t_start: float = 1.0) -> torch.Tensor:
    """Rectified-flow time grid (``t = 1`` is noise, ``t = 0`` is data)."""
    return get_timesteps(steps, t_start).to(torch.float32)


def scale_to_sigma_space(x_t: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """VP state -> scaled state: ``x_t / sqrt(alpha_bar) = x_t * sqrt(1 + sigma^2)``."""
    return x_t * math.sqrt(1.0 + float(sigma) ** 2)


def unscale_from_sigma_space(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Scaled state -> VP state."""
    return x / math.sqrt(1.0 + float(sigma) ** 2)
