"""The known 2-D mixture of Gaussians the sampler tests are checked against."""

from __future__ import annotations

import torch

torch.set_num_threads(1)

MEANS = torch.tensor([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])
WEIGHTS = torch.tensor([0.4, 0.3, 0.2, 0.1])
STD = 0.25


def sample_mog(n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws from the toy mixture (unequal weights so mode mass is a real check)."""
    k = torch.multinomial(WEIGHTS, n, replacement=True, generator=generator)
    return MEANS[k] + STD * torch.randn(n, 2, generator=generator)


def mode_mass(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Share of samples nearest each mode, and the share within 4 std of its mode."""
    d = torch.cdist(x, MEANS)
    nearest = d.argmin(dim=1)
    on_mode = float((d.min(dim=1).values < 4 * STD).float().mean())
    return torch.bincount(nearest, minlength=len(MEANS)).float() / len(x), on_mode


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 1.0) -> float:
    """Biased RBF-kernel MMD^2 between two samples."""

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a, b) ** 2 / (2 * bandwidth**2))

    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
