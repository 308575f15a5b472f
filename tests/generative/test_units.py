"""Schedules, sampler mechanics and NICE's exact likelihood, on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.generative.denoisers import CFGDenoiser, VPDenoiser
from funnel.generative.nice import NICE, NICEConfig
from funnel.generative.sampling import (
    SamplerStep,
    ancestral_step,
    get_sampler,
    sample_ddim,
    sample_euler_flow,
    sample_euler_maruyama,
    sample_heun_pfode,
    sample_nice,
)
from funnel.generative.schedules import (
    VPSchedule,
    get_flow_times,
    get_sigmas,
    get_timesteps,
)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@given(t=st.floats(min_value=1e-3, max_value=0.99), scale=st.floats(min_value=1e-3, max_value=2))
@settings(max_examples=60, deadline=None)
def test_t_of_sigma_inverts_sigma(kind: str, t: float, scale: float) -> None:
    sched = VPSchedule(kind=kind, scale=scale)
    sigma = sched.sigma(torch.tensor([t], dtype=torch.float64))
    assert float(sched.t_of_sigma(sigma)) == pytest.approx(t, abs=1e-6)


def test_linear_schedule_matches_closed_form() -> None:
    # Song et al.: alpha_bar(t) = exp(-(b0 t + (b1 - b0) t^2 / 2)); at t=1, b0=0.1, b1=20: e^-10.05
    sched = VPSchedule()
    assert float(sched.alpha_bar(torch.tensor(1.0))) == pytest.approx(math.exp(-10.05))
    assert float(sched.alpha_bar(torch.tensor(0.0))) == 1.0
    small = VPSchedule(scale=0.01)  # DiffRec's small noise: sigma_max = sqrt(e^0.1005 - 1)
    assert float(small.sigma(torch.tensor(1.0))) == pytest.approx(math.sqrt(math.expm1(0.1005)))


def test_cosine_schedule_is_monotone_and_ends_noisy() -> None:
    sched = VPSchedule(kind="cosine")
    ab = sched.alpha_bar(torch.linspace(0, 1, 101))
    assert float(ab[0]) == pytest.approx(1.0)
    assert torch.all(ab[1:] < ab[:-1])
    assert float(ab[-1]) < 1e-6


def test_sigma_grid_shape_and_end() -> None:
    sigmas = get_sigmas(VPSchedule(), 10, t_start=0.5)
    assert sigmas.shape == (11,)
    assert float(sigmas[-1]) == 0.0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    assert float(sigmas[0]) == pytest.approx(float(VPSchedule().sigma(torch.tensor(0.5))), 1e-5)
    assert get_flow_times(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "quadratic"}, "The 'kind' parameter must be one of"),
        ({"beta_min": 5.0, "beta_max": 1.0}, "beta_min=5.0, beta_max=1.0"),
        ({"scale": 0.0}, "The 'scale' parameter must be > 0. Got 0.0"),
    ],
)
def test_schedule_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VPSchedule(**kwargs)


def test_timesteps_reject_bad_steps() -> None:
    with pytest.raises(ValueError, match="'steps' parameter must be an int >= 1. Got 0"):
        get_timesteps(0)
    with pytest.raises(ValueError, match="t_start=1.5"):
        get_timesteps(3, t_start=1.5)


@given(
    s=st.floats(min_value=0.01, max_value=50), ratio=st.floats(min_value=0.0, max_value=0.99),
    eta=st.floats(min_value=0.0, max_value=1.0),
)
def test_ancestral_step_preserves_variance(s: float, ratio: float, eta: float) -> None:
    s_next = s * ratio
    down, up = ancestral_step(s, s_next, eta)
    assert down**2 + up**2 == pytest.approx(s_next**2, rel=1e-9, abs=1e-12)
    assert 0.0 <= up <= s_next + 1e-12


def test_ddpm_posterior_variance_matches_ho_et_al() -> None:
    # eta=1 noise in VP coordinates equals beta_tilde = (1-ab_prev)/(1-ab_t) * (1 - ab_t/ab_prev)
    sched = VPSchedule()
    t, t_prev = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    ab_t, ab_p = float(sched.alpha_bar(t)), float(sched.alpha_bar(t_prev))
    beta_tilde = (1 - ab_p) / (1 - ab_t) * (1 - ab_t / ab_p)
    _, up = ancestral_step(float(sched.sigma(t)), float(sched.sigma(t_prev)), 1.0)
    assert (up * math.sqrt(ab_p)) ** 2 == pytest.approx(beta_tilde, rel=1e-9)


def _gaussian_denoiser(mu: float, s0: float):
    """The exact denoiser E[x0 | x] for data N(mu, s0^2) at noise sigma (scaled coordinates)."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma[:, None] ** 2
        return (s0**2 * x + s2 * mu) / (s0**2 + s2)

    return denoise


@pytest.mark.parametrize("name", ["ddpm", "ddim", "sde", "pfode"])
def test_samplers_transport_gaussian_to_gaussian(name: str) -> None:
    # with the exact denoiser of N(3, 0.5^2), every sampler must land on that Gaussian
    denoise = _gaussian_denoiser(3.0, 0.5)
    # first-order samplers need a finer grid than Heun for the same 0.03 tolerance
    sigmas = get_sigmas(VPSchedule(), {"ddpm": 200, "sde": 200, "ddim": 100, "pfode": 25}[name])
    x = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0)) * math.sqrt(
        1 + float(sigmas[0]) ** 2)
    out = get_sampler(name)(denoise, x, sigmas, generator=torch.Generator().manual_seed(1))
    assert float(out.mean()) == pytest.approx(3.0, abs=0.03)
    assert float(out.std()) == pytest.approx(0.5, abs=0.03)


def test_pfode_heun_converges_at_second_order_and_ddim_at_first() -> None:
    # for Gaussian data the PF-ODE solution is x0 = mu + s0 (x - mu) / sqrt(s0^2 + sigma^2)
    denoise = _gaussian_denoiser(1.0, 0.5)

    def errors(steps: int) -> tuple[float, float]:
        sigmas = get_sigmas(VPSchedule(), steps)
        x = torch.linspace(-3, 3, 7)[:, None] * float(sigmas[0])
        exact = 1.0 + 0.5 * (x - 1.0) / math.sqrt(0.25 + float(sigmas[0]) ** 2)
        heun = sample_heun_pfode(denoise, x, sigmas)
        euler = sample_ddim(denoise, x, sigmas)  # DDIM(eta=0) is Euler on the same ODE
        return float((heun - exact).abs().max()), float((euler - exact).abs().max())

    heun50, euler50 = errors(50)
    heun100, euler100 = errors(100)
    assert heun50 < 0.02 and euler50 < 0.1
    assert heun100 < 0.45 * heun50  # better than first order
    assert 0.4 < euler100 / euler50 < 0.6  # first order: halving the step halves the error


def test_euler_flow_is_exact_on_straight_paths() -> None:
    # velocity field of the straight path from x0 = 2 to z: v = (x - 2) / t; one step is exact
    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (x - 2.0) / t[:, None]

    z = torch.randn(5, 3)
    out = sample_euler_flow(velocity, z, get_flow_times(1))
    assert torch.allclose(out, torch.full_like(z, 2.0))


def test_sampler_callback_and_bad_grids() -> None:
    denoise = _gaussian_denoiser(0.0, 1.0)
    seen: list[SamplerStep] = []
    sigmas = get_sigmas(VPSchedule(), 4)
    sample_euler_maruyama(denoise, torch.zeros(2, 1), sigmas, callback=seen.append,
                          generator=torch.Generator().manual_seed(0))
    assert [s.i for s in seen] == [0, 1, 2, 3]
    assert seen[0].level == pytest.approx(float(sigmas[0]))
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_ddim(denoise, torch.zeros(2, 1), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="at least 2 entries"):
        sample_ddim(denoise, torch.zeros(2, 1), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="'eta' parameter must be in"):
        sample_ddim(denoise, torch.zeros(2, 1), sigmas, eta=2.0)
    with pytest.raises(ValueError, match="Unknown sampler 'euler'; expected one of ddim"):
        get_sampler("euler")


def test_nice_log_likelihood_matches_hand_computed_change_of_variables() -> None:
    torch.manual_seed(0)
    flow = NICE(NICEConfig(dim=2, couplings=2, hidden=4, depth=1))
    with torch.no_grad():
        for layer in flow.couplings:  # make every coupling shift m(a) = 0.5 * a + 0.25
            first, last = layer.m[0], layer.m[-1]
            first.weight.zero_()
            first.weight[0, 0] = 1.0
            first.bias.zero_()
            first.bias[0] = 10.0  # keeps the ReLU in its linear part for |a| < 10
            last.weight.zero_()
            last.weight[0, 0] = 0.5
            last.bias.fill_(0.25 - 5.0)
        flow.log_scale.copy_(torch.tensor([0.3, -0.2]))
    x = torch.tensor([[0.4, -1.2]])
    # by hand: layer 1 (parity 0) shifts x2 by m(x1); layer 2 shifts x1 by m(new x2)
    x1, x2 = 0.4, -1.2
    x2 = x2 + 0.5 * x1 + 0.25  # -0.75
    x1 = x1 + 0.5 * x2 + 0.25  # 0.275
    z1, z2 = x1 * math.exp(0.3), x2 * math.exp(-0.2)
    expected = -0.5 * (z1**2 + z2**2) - math.log(2 * math.pi) + (0.3 - 0.2)
    with torch.no_grad():
        assert float(flow.log_prob(x)) == pytest.approx(expected, abs=1e-6)
        assert torch.allclose(flow(x), torch.tensor([[z1, z2]]), atol=1e-6)


def test_nice_log_likelihood_equals_autograd_jacobian_on_random_flow() -> None:
    torch.manual_seed(1)
    flow = NICE(NICEConfig(dim=4, couplings=3, hidden=8))
    with torch.no_grad():
        flow.log_scale.copy_(torch.tensor([0.1, -0.4, 0.2, 0.05]))
    x = torch.randn(4)
    jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0], x)
    z = flow(x[None])[0].detach()
    by_hand = torch.distributions.Normal(0, 1).log_prob(z).sum() + torch.logdet(jac)
    with torch.no_grad():
        assert float(flow.log_prob(x[None])) == pytest.approx(float(by_hand), abs=1e-5)
        z_batch = torch.randn(16, 4)
        assert torch.allclose(flow(sample_nice(flow, z_batch)), z_batch, atol=1e-5)


def test_nice_rejects_one_dimension() -> None:
    with pytest.raises(ValueError, match="NICE needs dim >= 2"):
        NICE(NICEConfig(dim=1))


def test_cfg_guidance_extrapolates_from_unconditional() -> None:
    def denoise(x, sigma, cond=None):
        return x * 0 + (1.0 if cond is None else 2.0)

    guided = CFGDenoiser(denoise, guidance=1.5)
    out = guided(torch.zeros(3, 2), torch.ones(3), cond=torch.ones(3, 1))
    assert torch.allclose(out, torch.full((3, 2), 2.0 + 1.5 * (2.0 - 1.0)))


def test_vp_denoiser_eps_parametrization() -> None:
    # an eps-network that always says eps = 1 gives x0 = x - sigma
    class Net(torch.nn.Module):
        def forward(self, x, t):
            return torch.ones_like(x)

    den = VPDenoiser(Net(), VPSchedule(), prediction="eps")
    out = den(torch.full((2, 3), 5.0), torch.tensor([0.5, 2.0]))
    assert torch.allclose(out[:, 0], torch.tensor([4.5, 3.0]))
    with pytest.raises(ValueError, match="'prediction' parameter must be one of"):
        VPDenoiser(Net(), VPSchedule(), prediction="v")
