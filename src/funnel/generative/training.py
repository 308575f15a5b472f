"""Training objectives and one small training loop, shared by the toy tests and the recommenders.

Objectives are functions of ``(net, batch, generator)``; the loop only samples minibatches and
steps Adam. Randomness always comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from funnel.generative.nice import NICE
from funnel.generative.sampling import sample_euler_flow
from funnel.generative.schedules import VPSchedule

Loss = Callable[[nn.Module, Sequence[torch.Tensor], torch.Generator], torch.Tensor]


def _uniform(n: int, generator: torch.Generator, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def diffusion_loss(
    schedule: VPSchedule, *, prediction: str = "eps", t_max: float = 1.0, t_min: float = 1e-3
) -> Loss:
    """Denoising loss on the VP process (Ho et al. 2020, eq. 14; x0 target as in DiffRec).

    The batch is ``(x0,)`` or ``(x0, cond)``; ``t ~ U(t_min, t_max)``.
    """

    def loss(net: nn.Module, batch: Sequence[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        x0 = batch[0]
        cond = {"cond": batch[1]} if len(batch) > 1 else {}
        t = _uniform(x0.shape[0], gen, t_min, t_max)
        ab = schedule.alpha_bar(t).to(x0.dtype)[:, None]  # (B, 1)
        eps = torch.randn(x0.shape, generator=gen)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        out = net(x_t, t.to(x0.dtype), **cond)
        target = x0 if prediction == "x0" else eps
        return ((out - target) ** 2).sum(dim=-1).mean()

    return loss


def flow_loss(
    *, t_max: float = 1.0, paired: bool = False, prediction: str = "velocity",
    noise_std: float = 1.0,
) -> Loss:
    """Rectified-flow loss (Liu, Gong & Liu 2023, eq. 1): regress ``z - x0`` on straight paths.

    The batch is ``(x0,)`` (noise drawn here) or, for reflow, ``(x0, z)`` pairs
    (``paired=True``); a trailing tensor is passed to the net as ``cond``. With
    ``prediction="x0"`` the net predicts the clean end point instead (wrap it in
    :class:`X0Velocity` for sampling): the same straight-path objective weighted by ``t^2``,
    which keeps a high-dimensional sparse target learnable.
    """

    def loss(net: nn.Module, batch: Sequence[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        x0 = batch[0]
        rest = list(batch[1:])
        z = rest.pop(0) if paired else noise_std * torch.randn(x0.shape, generator=gen)
        cond = {"cond": rest[0]} if rest else {}
        t = _uniform(x0.shape[0], gen, 0.0, t_max)
        x_t = (1 - t[:, None]) * x0 + t[:, None] * z
        out = net(x_t, t, **cond)
        target = x0 if prediction == "x0" else z - x0
        return ((out - target) ** 2).sum(dim=-1).mean()

    return loss


def nice_loss() -> Loss:
    """Negative exact log-likelihood of a NICE flow (batch ``(x,)`` or ``(x, cond)``)."""

    def loss(net: nn.Module, batch: Sequence[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        if not isinstance(net, NICE):
            raise TypeError(f"nice_loss needs a NICE flow, got {type(net).__name__}")
        cond = batch[1] if len(batch) > 1 else None
        return -net.log_prob(batch[0], cond).mean()

    return loss


class X0Velocity(nn.Module):
    """Velocity ``(x_t - x0_hat) / t`` of a rectified flow whose net predicts ``x0``."""

    def __init__(self, net: nn.Module, t_floor: float = 1e-4) -> None:
        super().__init__()
        self.net = net
        self.t_floor = t_floor

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
        return (x - self.net(x, t, **cond)) / t.clamp_min(self.t_floor)[:, None]


def train(
    net: nn.Module,
    data: Sequence[torch.Tensor],
    loss: Loss,
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    generator: torch.Generator,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Adam on random minibatches of the aligned tensors in ``data``; returns the loss trace."""
    n = data[0].shape[0]
    if any(d.shape[0] != n for d in data):
        raise ValueError(f"all tensors in 'data' must have {n} rows; got {[d.shape for d in data]}")
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    net.train()
    trace: list[float] = []
    for step in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=generator)
        value = loss(net, [d[idx] for d in data], generator)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        trace.append(float(value.detach()))
        if callback is not None:
            callback(step, trace[-1])
    net.eval()
    return trace


def reflow_pairs(
    velocity: nn.Module, z: torch.Tensor, steps: int, cond: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One reflow round's coupling: ``(x0_hat, z)`` with ``x0_hat`` the flow's ODE solution."""
    times = torch.linspace(1.0, 0.0, steps + 1)
    extra = {"cond": cond} if cond is not None else None
    x0 = sample_euler_flow(velocity, z, times, extra_args=extra)
    return x0, z
