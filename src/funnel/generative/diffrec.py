"""Interaction-space generative recommenders (DiffRec, Wang et al. SIGIR 2023) over one sampler set.

A user's binary interaction vector over all items is corrupted and reconstructed; items are
ranked by the reconstruction. Three objectives share the estimator:

- ``diffusion``: an x0-predicting MLP on a VP schedule with a *small* noise scale; inference
  starts from the history noised only to ``t_start`` (DiffRec's partially-noised x_T) and runs
  any diffusion sampler (``ddpm``, ``ddim``, ``sde``, ``pfode``) for any step count;
- ``flow``: a rectified-flow velocity field on straight paths history -> noise, Euler (``rf``);
- ``nice``: a NICE flow over the interaction vector conditioned on an encoding of the
  (dropped-out) history, trained by exact likelihood; one inverse pass of ``z = 0`` (``nice``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from funnel._checks import check_is_fitted
from funnel.config import from_mapping
from funnel.exceptions import ArtifactError, ConfigError
from funnel.generative.denoisers import MLPConfig, MLPDenoiser, VPDenoiser
from funnel.generative.nice import NICE, NICEConfig
from funnel.generative.sampling import get_sampler
from funnel.generative.schedules import VPSchedule, get_flow_times, get_sigmas
from funnel.generative.training import X0Velocity, diffusion_loss, flow_loss, nice_loss, train

OBJECTIVES = ("diffusion", "flow", "nice")
SAMPLERS_FOR = {"diffusion": ("ddpm", "ddim", "sde", "pfode"), "flow": ("rf",), "nice": ("nice",)}


@dataclass(frozen=True)
class DiffRecConfig:
    """Hyperparameters of :class:`DiffRec` (saved next to the weights; unknown keys refused)."""

    objective: str = "diffusion"
    hidden: tuple[int, ...] = (600,)
    time_dim: int = 10
    dropout: float = 0.5
    schedule: str = "linear"
    noise_scale: float = 0.01
    t_start: float = 0.5
    start_noise: bool = True
    nice_couplings: int = 2
    nice_cond_dim: int = 200
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(
                f"The 'objective' parameter must be one of {OBJECTIVES}. Got {self.objective!r}."
            )
        if not 0.0 < self.t_start <= 1.0:
            raise ConfigError(f"The 't_start' parameter must be in (0, 1]. Got {self.t_start!r}.")
        for name in ("epochs", "batch_size", "time_dim", "nice_couplings", "nice_cond_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"The '{name}' parameter must be an int >= 1. Got {value!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"The 'dropout' parameter must be in [0, 1). Got {self.dropout!r}.")


class ConditionalNICE(nn.Module):
    """NICE over the interaction vector, conditioned on an MLP encoding of the history."""

    def __init__(self, n_items: int, config: DiffRecConfig) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(n_items, config.nice_cond_dim), nn.Tanh()
        )
        self.flow = NICE(NICEConfig(
            dim=n_items, couplings=config.nice_couplings, hidden=config.hidden[0],
            depth=1, cond_dim=config.nice_cond_dim,
        ))

    def log_prob(self, target: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.flow.log_prob(target, self.encoder(history))

    def inverse(self, z: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        return self.flow.inverse(z, self.encoder(history))


class _NICEObjective:
    """Exact NLL of the full vector (dequantized) given the dropped-out history."""

    def __init__(self, dequant: float = 0.05) -> None:
        self.dequant = dequant
        self._nll = nice_loss()

    def __call__(
        self, net: nn.Module, batch: Sequence[torch.Tensor], gen: torch.Generator
    ) -> torch.Tensor:
        if not isinstance(net, ConditionalNICE):
            raise TypeError(f"the nice objective needs a ConditionalNICE, got {type(net).__name__}")
        x = batch[0]
        target = x + self.dequant * torch.randn(x.shape, generator=gen)
        return -net.log_prob(target, x).mean() / x.shape[1]


class DiffRec:
    """Generative recommender in interaction space; see the module docstring.

    Parameters
    ----------
    config : DiffRecConfig, optional
        All hyperparameters as one typed, frozen value (defaults if omitted).

    Example
    -------
    >>> model = DiffRec(DiffRecConfig(epochs=5)).fit(train_matrix)  # doctest: +SKIP
    >>> scores = model.score(train_matrix, sampler="ddim", steps=10)  # doctest: +SKIP
    """

    def __init__(self, config: DiffRecConfig | None = None) -> None:
        self.config = config if config is not None else DiffRecConfig()

    def _build(self, n_items: int, cfg: DiffRecConfig) -> nn.Module:
        if cfg.objective == "nice":
            return ConditionalNICE(n_items, cfg)
        return MLPDenoiser(MLPConfig(
            dim=n_items, hidden=cfg.hidden, time_dim=cfg.time_dim, dropout=cfg.dropout,
            activation="tanh",
        ))

    def _schedule(self, cfg: DiffRecConfig) -> VPSchedule:
        return VPSchedule(kind=cfg.schedule, scale=cfg.noise_scale)

    def fit(
        self, X: sp.spmatrix, *, callback: Callable[[int, float], None] | None = None
    ) -> DiffRec:
        """Train on the binary user x item matrix ``X``; returns self."""
        cfg = self.config
        if not isinstance(cfg, DiffRecConfig):
            raise TypeError(f"The 'config' parameter must be a DiffRecConfig. Got {cfg!r}.")
        X = _check_matrix(X)
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        net = self._build(X.shape[1], cfg)
        dense = torch.from_numpy(X.toarray())
        if cfg.objective == "diffusion":
            loss = diffusion_loss(self._schedule(cfg), prediction="x0")
        elif cfg.objective == "flow":
            loss = flow_loss(t_max=cfg.t_start, prediction="x0", noise_std=cfg.noise_scale)
        else:
            loss = _NICEObjective()
        steps = cfg.epochs * max(1, math.ceil(X.shape[0] / cfg.batch_size))
        self.loss_trace_ = train(
            net, [dense], loss, steps=steps, batch_size=cfg.batch_size, lr=cfg.lr,
            weight_decay=cfg.weight_decay, generator=gen, callback=callback,
        )
        self.network_ = net
        self.n_items_ = X.shape[1]
        return self

    def score(
        self, X: sp.spmatrix, *, sampler: str | None = None, steps: int = 10,
        generator: torch.Generator | None = None, batch_size: int = 1024,
        prior: np.ndarray | None = None,
    ) -> np.ndarray:
        """Reconstructed interaction scores (U, I) for the histories in ``X``.

        ``prior`` (U, I), e.g. EASE's scores scaled to the history's 0/1 range
        (:func:`funnel.generative.refine.normalize_scores`), is added to the history the reverse
        process starts from: the model then refines a strong prior instead of the bare history
        (diffusion and flow objectives; issue 22).
        """
        check_is_fitted(self, "network_")
        cfg = self.config
        sampler = sampler or SAMPLERS_FOR[cfg.objective][-1 if cfg.objective == "diffusion" else 0]
        if sampler not in SAMPLERS_FOR[cfg.objective]:
            raise ValueError(
                f"The 'sampler' parameter must be one of {SAMPLERS_FOR[cfg.objective]} for "
                f"objective {cfg.objective!r}. Got {sampler!r} instead."
            )
        X = _check_matrix(X, n_items=self.n_items_)
        if prior is not None and np.shape(prior) != X.shape:
            raise ValueError(f"The 'prior' parameter must have shape {X.shape} (as X). "
                             f"Got {np.shape(prior)} instead.")
        gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
        out = []
        for i in range(0, X.shape[0], batch_size):
            x = torch.from_numpy(X[i:i + batch_size].toarray())
            if prior is not None:
                x = x + torch.as_tensor(np.asarray(prior[i:i + batch_size], dtype=np.float32))
            out.append(self._score_batch(x, cfg, sampler, steps, gen))
        return np.concatenate(out) if out else np.zeros((0, self.n_items_), np.float32)

    def _score_batch(self, x: torch.Tensor, cfg: DiffRecConfig, sampler: str, steps: int,
                     gen: torch.Generator) -> np.ndarray:
        fn = get_sampler(sampler)
        noise = torch.randn(x.shape, generator=gen) if cfg.start_noise else torch.zeros_like(x)
        if cfg.objective == "nice":
            return fn(self.network_, torch.zeros_like(x), extra_args={"history": x}).numpy()
        if cfg.objective == "flow":
            times = get_flow_times(steps, cfg.t_start)
            start = (1 - cfg.t_start) * x + cfg.t_start * cfg.noise_scale * noise
            velocity = X0Velocity(self.network_)
            return fn(velocity, start, times, generator=gen).numpy()
        schedule = self._schedule(cfg)
        sigmas = get_sigmas(schedule, steps, cfg.t_start)
        denoiser = VPDenoiser(self.network_, schedule, prediction="x0")
        start = x + float(sigmas[0]) * noise  # scaled coordinates: x_t / sqrt(alpha_bar)
        return fn(denoiser, start, sigmas, generator=gen).numpy()

    def save(self, directory: Path) -> None:
        """``config.json`` + ``weights.safetensors`` (no pickle)."""
        check_is_fitted(self, "network_")
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"config": _jsonable(asdict(self.config)), "n_items": self.n_items_}
        (directory / "config.json").write_text(json.dumps(payload, indent=2))
        state = {k: v.contiguous() for k, v in self.network_.state_dict().items()}
        save_file(state, str(directory / "weights.safetensors"))

    @classmethod
    def load(cls, directory: Path) -> DiffRec:
        path = directory / "config.json"
        if not path.is_file():
            raise ArtifactError(f"{path}: missing; not a saved DiffRec directory")
        payload = json.loads(path.read_text())
        cfg = from_mapping(DiffRecConfig, payload["config"], where=f"{path}")
        model = cls(cfg)
        net = model._build(int(payload["n_items"]), cfg)
        net.load_state_dict(load_file(str(directory / "weights.safetensors")))
        net.eval()
        model.network_ = net
        model.n_items_ = int(payload["n_items"])
        return model


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _check_matrix(X: sp.spmatrix, n_items: int | None = None) -> sp.csr_matrix:
    if not sp.issparse(X):
        raise TypeError(f"The 'X' parameter must be a scipy sparse matrix. Got {type(X).__name__}.")
    X = sp.csr_matrix(X, dtype=np.float32)
    if n_items is not None and X.shape[1] != n_items:
        raise ValueError(
            f"The 'X' parameter must have {n_items} item columns (as in fit). Got {X.shape[1]}."
        )
    return X
