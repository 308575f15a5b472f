"""Generative recommenders that start from a strong linear prior (EASE, item-kNN, RP3beta).

Published diffusion recommenders do not beat tuned EASE ("Diffusion Recommender Models and the
Illusion of Progress", 2025), so here the generative model only has to learn a *refinement* of
the prior's score vector ``z = X @ W``:

- ``flow`` (after FlowCF, Liu et al. 2025): a rectified flow on straight paths from the prior's
  (normalised) scores at ``t = 1`` to the observed interactions at ``t = 0``, Euler (``rf``) in
  one or two steps;
- ``diffusion``: DiffRec's x0-denoiser conditioned on ``z``; the reverse process starts from the
  noised history (``start="history"``) or from the noised prior scores (``start="prior"``) and runs
  any diffusion sampler.

The network is residual on ``z`` with a zero-initialised output layer, so before training every
sampler returns the prior's own ranking. In training the prior sees a dropped-out history and the
target is the whole history, so the refinement is learnt on the task it is scored on (held-out
items). :func:`blend` is the third idea: a sampler's scores mixed with the prior's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from funnel._checks import check_is_fitted
from funnel.exceptions import ConfigError
from funnel.generative.baselines import EASE, _check_matrix, linear_weights
from funnel.generative.denoisers import VPDenoiser, timestep_embedding
from funnel.generative.sampling import get_sampler
from funnel.generative.schedules import VPSchedule, get_flow_times, get_sigmas
from funnel.generative.training import X0Velocity, train


class LinearPrior(Protocol):
    """A linear item-item baseline (EASE, ItemKNN, RP3beta): ``fit(X)`` learns its ``W``."""

    def fit(self, X: sp.spmatrix) -> object: ...


REFINE_OBJECTIVES = ("flow", "diffusion")
REFINE_STARTS = ("prior", "history", "both")
REFINE_SAMPLERS = {"flow": ("rf",), "diffusion": ("ddim", "pfode", "ddpm", "sde")}


@dataclass(frozen=True)
class PriorRefineConfig:
    """Hyperparameters of :class:`PriorRefiner` (the prior is passed separately)."""

    objective: str = "flow"
    start: str = "prior"
    hidden: tuple[int, ...] = (400,)
    time_dim: int = 10
    mask_rate: float = 0.3
    dropout: float = 0.5
    noise_scale: float = 0.01
    t_start: float = 0.5
    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in REFINE_OBJECTIVES:
            raise ConfigError(f"The 'objective' parameter must be one of {REFINE_OBJECTIVES}. "
                              f"Got {self.objective!r}.")
        if self.start not in REFINE_STARTS:
            raise ConfigError(
                f"The 'start' parameter must be one of {REFINE_STARTS}. Got {self.start!r}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"The 'dropout' parameter must be in [0, 1). Got {self.dropout!r}.")
        if not 0.0 <= self.mask_rate < 1.0:
            raise ConfigError(
                f"The 'mask_rate' parameter must be in [0, 1). Got {self.mask_rate!r}."
            )
        if not 0.0 < self.t_start <= 1.0:
            raise ConfigError(f"The 't_start' parameter must be in (0, 1]. Got {self.t_start!r}.")
        for name in ("epochs", "batch_size", "time_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"The '{name}' parameter must be an int >= 1. Got {value!r}.")


class RefineNet(nn.Module):
    """``(x, t, cond) -> cond + MLP([x, emb(t), cond])``: a residual x0-predictor around the prior.

    The last layer starts at zero, so the untrained net returns the prior's scores ``cond``.
    """

    def __init__(
        self, n_items: int, hidden: tuple[int, ...], time_dim: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.time_proj = nn.Linear(time_dim, time_dim)
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout else []
        width = 2 * n_items + time_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.Tanh()]
            width = h
        out = nn.Linear(width, n_items)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*layers, out)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, I), t (B,), prior scores cond (B, I) -> x0 estimate (B, I)."""
        emb = self.time_proj(timestep_embedding(t, self.time_dim))  # (B, time_dim)
        return cond + self.net(torch.cat([x, emb, cond], dim=-1))


def normalize_scores(z: torch.Tensor) -> torch.Tensor:
    """Each row divided by its largest absolute value, so prior scores live on the 0/1 scale."""
    return z / z.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8)


class PriorRefiner:
    """A flow or diffusion model that refines a linear prior's scores; see the module docstring.

    Parameters
    ----------
    prior : EASE, ItemKNN or RP3beta, optional
        Fitted inside :meth:`fit` on the same matrix (``EASE()`` if omitted).
    config : PriorRefineConfig, optional
        The generative model's hyperparameters.

    Example
    -------
    >>> model = PriorRefiner(prior=EASE(l2=200.0)).fit(train_matrix)  # doctest: +SKIP
    >>> scores = model.score(train_matrix, sampler="rf", steps=2)  # doctest: +SKIP
    """

    def __init__(
        self, prior: LinearPrior | None = None, config: PriorRefineConfig | None = None
    ) -> None:
        self.prior = prior
        self.config = config

    def fit(self, X: sp.spmatrix, *, future: sp.spmatrix | None = None) -> PriorRefiner:
        """Fit the prior, then the refinement network, on the binary user x item ``X``.

        ``future`` (same shape) holds later interactions of the same users: when given, the
        refinement learns to predict them from ``X``, the task recall is scored on (the prior
        is still fitted on ``X`` alone); otherwise it learns to predict dropped-out items of ``X``.
        """
        cfg = self.config if self.config is not None else PriorRefineConfig()
        if not isinstance(cfg, PriorRefineConfig):
            raise TypeError(f"The 'config' parameter must be a PriorRefineConfig. Got {cfg!r}.")
        X = _check_matrix(X)
        if future is not None:
            future = _check_matrix(future, "future", n_items=X.shape[1])
            if future.shape[0] != X.shape[0]:
                raise ValueError(f"The 'future' parameter must have {X.shape[0]} rows (as X). "
                                 f"Got {future.shape[0]} instead.")
        # a copy, so that the hyperparameter object passed in is never fitted in place
        prior = copy.deepcopy(self.prior) if self.prior is not None else EASE()
        prior.fit(X)
        weights = torch.from_numpy(np.asarray(linear_weights(prior), dtype=np.float32))
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        net = RefineNet(X.shape[1], cfg.hidden, cfg.time_dim, cfg.dropout)
        schedule = VPSchedule(scale=cfg.noise_scale)

        def loss(net: nn.Module, batch: Sequence[torch.Tensor], g: torch.Generator
                 ) -> torch.Tensor:
            history, x0 = batch[0], batch[-1]  # (B, I) each; x0 is the target
            keep = (torch.rand(x0.shape, generator=g) >= cfg.mask_rate).to(x0.dtype)
            seen = history * keep  # what the prior (and the start state) may see
            z = normalize_scores(seen @ weights)  # (B, I)
            base = _start(cfg.start, seen, z)
            if cfg.objective == "flow":
                t = torch.rand(x0.shape[0], generator=g)
                x_t = (1 - t[:, None]) * x0 + t[:, None] * base
            else:
                t = cfg.t_start * torch.rand(x0.shape[0], generator=g).clamp_min(1e-3)
                ab = schedule.alpha_bar(t).to(x0.dtype)[:, None]  # (B, 1)
                x_t = ab.sqrt() * base + (1 - ab).sqrt() * torch.randn(x0.shape, generator=g)
            return ((net(x_t, t, cond=z) - x0) ** 2).sum(dim=-1).mean()

        steps = cfg.epochs * max(1, math.ceil(X.shape[0] / cfg.batch_size))
        data = [torch.from_numpy(X.toarray())]
        if future is not None:
            data.append(torch.from_numpy(future.toarray()))
        self.loss_trace_ = train(net, data, loss, steps=steps, batch_size=cfg.batch_size,
                                 lr=cfg.lr, weight_decay=cfg.weight_decay, generator=gen)
        self.prior_, self.weights_, self.network_, self.config_ = prior, weights, net, cfg
        return self

    def prior_scores(self, X: sp.spmatrix) -> np.ndarray:
        """The fitted prior's own scores (U, I), the bar the refinement must clear."""
        check_is_fitted(self, "network_")
        X = _check_matrix(X, n_items=self.weights_.shape[0])
        return np.asarray(X @ self.weights_.numpy())

    def score(
        self, X: sp.spmatrix, *, sampler: str | None = None, steps: int = 2,
        generator: torch.Generator | None = None, batch_size: int = 1024,
    ) -> np.ndarray:
        """Refined scores (U, I) for the histories in ``X``."""
        check_is_fitted(self, "network_")
        cfg = self.config_
        allowed = REFINE_SAMPLERS[cfg.objective]
        sampler = sampler or allowed[0]
        if sampler not in allowed:
            raise ValueError(f"The 'sampler' parameter must be one of {allowed} for objective "
                             f"{cfg.objective!r}. Got {sampler!r} instead.")
        X = _check_matrix(X, n_items=self.weights_.shape[0])
        gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
        out = [self._score_batch(torch.from_numpy(X[i:i + batch_size].toarray()), sampler, steps,
                                 gen) for i in range(0, X.shape[0], batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.weights_.shape[0]), np.float32)

    def _score_batch(self, x: torch.Tensor, sampler: str, steps: int,
                     gen: torch.Generator) -> np.ndarray:
        cfg, fn = self.config_, get_sampler(sampler)
        z = normalize_scores(x @ self.weights_)  # (B, I)
        base = _start(cfg.start, x, z)
        if cfg.objective == "flow":
            velocity = X0Velocity(self.network_)
            return fn(velocity, base, get_flow_times(steps), extra_args={"cond": z},
                      generator=gen).numpy()
        schedule = VPSchedule(scale=cfg.noise_scale)
        sigmas = get_sigmas(schedule, steps, cfg.t_start)
        start = base + float(sigmas[0]) * torch.randn(x.shape, generator=gen)
        denoiser = VPDenoiser(self.network_, schedule, prediction="x0")
        return fn(denoiser, start, sigmas, extra_args={"cond": z}, generator=gen).numpy()


def _start(start: str, history: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Where the reverse process / flow starts: the prior's scores, the history, or their sum."""
    return {"prior": z, "history": history, "both": history + z}[start]


def blend(prior_scores: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * std(prior) + weight * std(scores)``, each standardised per user.

    Standardising puts a sampler's reconstruction and a linear model's scores on one scale, so a
    single weight (tuned on validation) can mix them.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"The 'weight' parameter must be in [0, 1]. Got {weight!r} instead.")

    def std(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        return (a - a.mean(axis=1, keepdims=True)) / (a.std(axis=1, keepdims=True) + 1e-8)

    return (1.0 - weight) * std(prior_scores) + weight * std(scores)
