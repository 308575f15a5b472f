"""Every sampler against a 2-D mixture of Gaussians whose density we know.

Models are trained once per module (a few seconds each on one thread). Thresholds: a sample of
the true mixture has MMD^2 ~ 5e-4 against another; a sampler collapsing to the mean has ~0.27.
"""

from __future__ import annotations

import math

import pytest
import torch
from gen_toy import MEANS, STD, WEIGHTS, mmd, mode_mass, sample_mog

from funnel.generative.denoisers import MLPConfig, MLPDenoiser, VPDenoiser
from funnel.generative.nice import NICE, NICEConfig
from funnel.generative.sampling import (
    SAMPLERS,
    get_sampler,
    invert_ddim,
    sample_ddim,
    sample_euler_flow,
    sample_nice,
)
from funnel.generative.schedules import VPSchedule, get_flow_times, get_sigmas
from funnel.generative.training import (
    diffusion_loss,
    flow_loss,
    nice_loss,
    reflow_pairs,
    train,
)

pytestmark = pytest.mark.slow
N = 2000


def _net() -> MLPDenoiser:
    return MLPDenoiser(MLPConfig(dim=2, hidden=(128, 128), time_dim=16))


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    torch.manual_seed(0)
    return sample_mog(20_000, torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    return sample_mog(N, torch.Generator().manual_seed(123))


@pytest.fixture(scope="module")
def diffusion(data: torch.Tensor) -> VPDenoiser:
    torch.manual_seed(1)
    schedule = VPSchedule()
    net = _net()
    gen = torch.Generator().manual_seed(1)
    train(net, [data], diffusion_loss(schedule, prediction="eps"), steps=1500,
          batch_size=256, lr=3e-3, generator=gen)
    return VPDenoiser(net, schedule, prediction="eps")


@pytest.fixture(scope="module")
def flows(data: torch.Tensor) -> tuple[MLPDenoiser, MLPDenoiser]:
    """A 1-rectified flow and its one-round reflow (2-rectified flow)."""
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(2)
    first = _net()
    train(first, [data], flow_loss(), steps=1500, batch_size=256, lr=3e-3, generator=gen)
    x0, z = reflow_pairs(first, torch.randn(6000, 2, generator=gen), steps=30)
    second = _net()
    second.load_state_dict(first.state_dict())
    train(second, [x0, z], flow_loss(paired=True), steps=1000, batch_size=256, lr=1e-3,
          generator=gen)
    return first, second


def _start(sigmas: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, 2, generator=gen) * math.sqrt(1.0 + float(sigmas[0]) ** 2)


def _assert_matches_mixture(x: torch.Tensor, reference: torch.Tensor, *, mass_tol: float,
                            on_mode: float, max_mmd: float) -> None:
    mass, on = mode_mass(x)
    assert torch.all((mass - WEIGHTS).abs() < mass_tol), (mass, WEIGHTS)
    assert on > on_mode, on
    assert mmd(x, reference) < max_mmd


@pytest.mark.parametrize(
    ("name", "steps"), [("ddpm", 250), ("ddim", 25), ("sde", 100), ("pfode", 10)]
)
def test_diffusion_samplers_match_mixture(
    diffusion: VPDenoiser, reference: torch.Tensor, name: str, steps: int
) -> None:
    sigmas = get_sigmas(diffusion.schedule, steps)
    out = get_sampler(name)(diffusion, _start(sigmas, 7), sigmas,
                            generator=torch.Generator().manual_seed(8))
    _assert_matches_mixture(out, reference, mass_tol=0.08, on_mode=0.9, max_mmd=0.02)


def test_one_step_ddim_collapses_to_the_mean(diffusion: VPDenoiser, reference: torch.Tensor):
    # the control that shows the thresholds above can fail: E[x0 | x_T] sits between the modes
    sigmas = get_sigmas(diffusion.schedule, 1)
    out = sample_ddim(diffusion, _start(sigmas, 7), sigmas)
    assert mode_mass(out)[1] < 0.3
    assert mmd(out, reference) > 0.1


def test_rectified_flow_matches_mixture_with_ten_steps(flows, reference: torch.Tensor) -> None:
    out = sample_euler_flow(flows[0], torch.randn(N, 2, generator=torch.Generator().manual_seed(3)),
                            get_flow_times(10))
    _assert_matches_mixture(out, reference, mass_tol=0.08, on_mode=0.9, max_mmd=0.02)


def test_reflow_one_step_beats_one_step_ddim(diffusion, flows, reference) -> None:
    z = torch.randn(N, 2, generator=torch.Generator().manual_seed(4))
    rf1 = sample_euler_flow(flows[1], z, get_flow_times(1))
    sigmas = get_sigmas(diffusion.schedule, 1)
    ddim1 = sample_ddim(diffusion, z * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas)
    assert mmd(rf1, reference) < 0.25 * mmd(ddim1, reference)
    assert mode_mass(rf1)[1] > 0.7 > mode_mass(ddim1)[1]
    # and reflow straightened the paths: 1 step of the 2-RF beats 1 step of the 1-RF
    rf1_first = sample_euler_flow(flows[0], z, get_flow_times(1))
    assert mmd(rf1, reference) < mmd(rf1_first, reference)


def test_ddim_eta0_is_deterministic_and_eta1_is_not(diffusion: VPDenoiser) -> None:
    sigmas = get_sigmas(diffusion.schedule, 10)
    x = _start(sigmas, 9)[:200]
    a = sample_ddim(diffusion, x, sigmas, generator=torch.Generator().manual_seed(1))
    b = sample_ddim(diffusion, x, sigmas, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = sample_ddim(diffusion, x, sigmas, eta=1.0, generator=torch.Generator().manual_seed(1))
    d = sample_ddim(diffusion, x, sigmas, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert (c - d).abs().max() > 1e-2
    e = sample_ddim(diffusion, x, sigmas, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(c, e)  # randomness comes only from the generator passed in


def test_ddim_inversion_round_trips(diffusion: VPDenoiser) -> None:
    sigmas = get_sigmas(diffusion.schedule, 50)
    x0 = sample_mog(200, torch.Generator().manual_seed(5))
    grid = torch.cat([sigmas[:-1], torch.tensor([0.02])])  # stop just above 0 (D(x, 0) is the id)
    latent = invert_ddim(diffusion, x0, grid)
    assert latent.std() > 0.5  # it really moved to the noise end
    back = sample_ddim(diffusion, latent, grid)
    assert (back - x0).abs().max() < 1e-3


@pytest.fixture(scope="module")
def nice(data: torch.Tensor) -> NICE:
    torch.manual_seed(3)
    flow = NICE(NICEConfig(dim=2, couplings=6, hidden=64))
    train(flow, [data], nice_loss(), steps=2500, batch_size=256, lr=2e-3,
          generator=torch.Generator().manual_seed(3))
    return flow


def _true_log_density(x: torch.Tensor) -> torch.Tensor:
    comp = -((x[:, None, :] - MEANS[None]) ** 2).sum(-1) / (2 * STD**2)  # (B, K)
    comp = comp - math.log(2 * math.pi * STD**2) + torch.log(WEIGHTS)[None]
    return torch.logsumexp(comp, dim=1)


def test_nice_samples_match_mixture(nice: NICE, reference: torch.Tensor) -> None:
    z = torch.randn(N, 2, generator=torch.Generator().manual_seed(6))
    out = sample_nice(nice, z)
    # looser than the diffusion samplers: a volume-preserving flow misweights modes more
    _assert_matches_mixture(out, reference, mass_tol=0.12, on_mode=0.85, max_mmd=0.04)
    # average log-likelihood is close to the true entropy bound, far above a single Gaussian's
    with torch.no_grad():
        ll = float(nice.log_prob(reference).mean())
    true_ll = float(_true_log_density(reference).mean())
    gaussian_ll = float(torch.distributions.MultivariateNormal(
        reference.mean(0), torch.cov(reference.T)).log_prob(reference).mean())
    assert true_ll - 0.6 < ll <= true_ll + 0.05
    assert ll > gaussian_ll + 1.0


def test_samplers_share_one_signature() -> None:
    import inspect

    for name, fn in SAMPLERS.items():
        params = inspect.signature(fn).parameters
        assert list(params)[:2] == ["model", "x"], name
        for kw in ("extra_args", "callback", "generator"):
            assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY, (name, kw)
