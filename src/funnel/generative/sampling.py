"""Samplers: small pure functions with one shared signature (STYLE P6, after k-diffusion).

Every sampler is ``sample_x(model, x, steps_grid, *, extra_args=None, callback=None,
generator=None, eta=...) -> x`` and

- runs under ``torch.no_grad()`` and keeps no state between calls (safe under concurrent requests);
- takes its randomness from ``generator`` (a ``torch.Generator``), never from global state;
- calls ``callback(SamplerStep(...))`` once per step when given.

Diffusion samplers walk a decreasing ``sigmas`` grid (from :func:`schedules.get_sigmas`) on the
scaled state ``x / sqrt(alpha_bar)``; ``model(x, sigma, **extra_args)`` returns the denoised
estimate of ``x_0`` (wrap a network with :class:`funnel.generative.denoisers.VPDenoiser`). The
flow sampler walks flow times ``1 -> 0`` and ``model(x, t)`` returns the velocity
``dx/dt``. The NICE sampler is one exact inverse pass of the flow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class SamplerStep:
    """What a sampler reports to its callback after each step."""

    i: int
    x: torch.Tensor
    level: float  # sigma (diffusion) or t (flow) the step started from
    denoised: torch.Tensor


Callback = Callable[[SamplerStep], None]


class Invertible(Protocol):
    def inverse(self, z: torch.Tensor, **kwargs: Any) -> torch.Tensor: ...


def _batch_level(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    return level.to(x.dtype).expand(x.shape[0])  # (B,)


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _check_grid(grid: torch.Tensor, name: str) -> None:
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(
            f"The '{name}' grid must be 1-D with at least 2 entries (one step). "
            f"Got shape {tuple(grid.shape)} instead."
        )
    if not bool(torch.all(grid[1:] < grid[:-1])):
        raise ValueError(f"The '{name}' grid must be strictly decreasing. Got {grid.tolist()}.")


def _steps(grid: torch.Tensor, name: str) -> Iterator[tuple[int, torch.Tensor, float, float]]:
    """``(i, grid[i], float(grid[i]), float(grid[i + 1]))`` per step, after checking the grid."""
    _check_grid(grid, name)
    for i in range(len(grid) - 1):
        yield i, grid[i], float(grid[i]), float(grid[i + 1])


def ancestral_step(
    sigma_from: float, sigma_to: float, eta: float = 1.0
) -> tuple[float, float]:
    """Split a step into (sigma_down, sigma_up) so that DDIM's eta-noise is exact.

    With ``eta = 1`` this is DDPM's posterior variance (Ho et al. 2020, Alg. 2); ``eta = 0`` is
    deterministic DDIM (Song et al. 2021, eq. 12), written in scaled coordinates.
    """
    if sigma_to == 0.0 or eta == 0.0:
        return sigma_to, 0.0
    up2 = eta**2 * sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2
    up = min(sigma_to, up2**0.5)
    return (sigma_to**2 - up**2) ** 0.5, up


@torch.no_grad()
def sample_ddim(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM (Song, Meng & Ermon 2021, eq. 12): deterministic at ``eta=0``, DDPM at ``eta=1``."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"The 'eta' parameter must be in [0, 1]. Got {eta!r} instead.")
    for i, level, s, s_next in _steps(sigmas, "sigmas"):
        denoised = model(x, _batch_level(x, level), **(extra_args or {}))
        down, up = ancestral_step(s, s_next, eta)
        eps = (x - denoised) / s
        x = denoised + down * eps
        if up > 0:
            x = x + up * _noise(x, generator)
        if callback is not None:
            callback(SamplerStep(i, x, s, denoised))
    return x


def sample_ddpm(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) on any sigma grid."""
    return sample_ddim(
        model, x, sigmas, extra_args=extra_args, callback=callback, generator=generator, eta=1.0
    )


@torch.no_grad()
def invert_ddim(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
    iterations: int = 30,
) -> torch.Tensor:
    """Invert deterministic DDIM: map ``x`` at level ``sigmas[-1]`` back to level ``sigmas[0]``.

    Each eta=0 step ``a -> b`` is ``x_b = (b/a) x_a + (1 - b/a) D(x_a, a)``; inversion solves it
    for ``x_a`` by fixed-point iteration (``y <- y - residual``), so sampling the result on the
    same grid returns ``x`` up to the iteration tolerance, unlike the one-shot approximation of
    Song et al. (2021, eq. 14). ``generator`` is unused (shared signature).
    """
    extra = extra_args or {}
    for i, level, a, b in reversed(list(_steps(sigmas, "sigmas"))):
        batch_level = _batch_level(x, level)
        y = x.clone()
        for _ in range(iterations):
            den = model(y, batch_level, **extra)
            y = y - ((b / a) * y + (1.0 - b / a) * den - x)
        x = y
        if callback is not None:
            callback(SamplerStep(i, x, a, den))
    return x


@torch.no_grad()
def sample_euler_maruyama(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Euler-Maruyama on the reverse VP-SDE (Song et al. 2021, eq. 6), in scaled coordinates.

    In time ``u = sigma^2`` the reverse SDE is ``dx = (x - D(x)) / u du + dW_u``; the last step to
    ``sigma = 0`` returns the denoised mean (the usual noise-free final step).
    """
    for i, level, s, s_next in _steps(sigmas, "sigmas"):
        denoised = model(x, _batch_level(x, level), **(extra_args or {}))
        if s_next == 0.0:
            x = denoised
        else:
            du = s_next**2 - s**2  # negative
            x = x + du * (x - denoised) / s**2 + (-du) ** 0.5 * _noise(x, generator)
        if callback is not None:
            callback(SamplerStep(i, x, s, denoised))
    return x


@torch.no_grad()
def sample_heun_pfode(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Heun's method on the probability-flow ODE ``dx/dsigma = (x - D(x)) / sigma``.

    Karras et al. 2022, Algorithm 1 (Euler on the final step to sigma = 0). ``generator`` is
    accepted for the shared signature; the ODE uses no randomness.
    """
    extra = extra_args or {}
    for i, level, s, s_next in _steps(sigmas, "sigmas"):
        denoised = model(x, _batch_level(x, level), **extra)
        d = (x - denoised) / s
        x_euler = x + (s_next - s) * d
        if s_next == 0.0:
            x = x_euler
        else:
            den2 = model(x_euler, _batch_level(x, sigmas[i + 1]), **extra)
            d2 = (x_euler - den2) / s_next
            x = x + (s_next - s) * 0.5 * (d + d2)
        if callback is not None:
            callback(SamplerStep(i, x, s, denoised))
    return x


@torch.no_grad()
def sample_euler_flow(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    times: torch.Tensor,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Euler steps of a rectified flow (Liu et al. 2023): ``x <- x + (t_next - t) v(x, t)``."""
    for i, level, t, t_next in _steps(times, "times"):
        v = model(x, _batch_level(x, level), **(extra_args or {}))
        x = x + (t_next - t) * v
        if callback is not None:
            callback(SamplerStep(i, x, t, x - t_next * v))
    return x


@torch.no_grad()
def sample_nice(
    model: Invertible,
    x: torch.Tensor,
    times: torch.Tensor | None = None,
    *,
    extra_args: Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """NICE (Dinh et al. 2015) sampling: one exact inverse pass ``x = f^-1(z)``.

    ``x`` is the latent ``z``; ``times`` is accepted for the shared signature and ignored.
    """
    out = model.inverse(x, **(extra_args or {}))
    if callback is not None:
        callback(SamplerStep(0, out, 1.0, out))
    return out


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "sde": sample_euler_maruyama,
    "pfode": sample_heun_pfode,
    "rf": sample_euler_flow,
    "nice": sample_nice,
}
"""Sampler registry by the names the benchmark and CLI use (STYLE P8)."""


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler called ``name``; ``ValueError`` lists the valid names."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"Unknown sampler {name!r}; expected one of {', '.join(sorted(SAMPLERS))}."
        ) from None
