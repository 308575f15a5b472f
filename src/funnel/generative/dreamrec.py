"""Embedding-space generative recall (DreamRec, Yang et al. NeurIPS 2023).

A small transformer encodes the user's recent items; a conditional denoiser generates the
*embedding* of the next item with classifier-free guidance; real items are then found by inner
product against the (fixed, L2-normalised) item vectors. The item vectors come from the
embeddings stage (or any table), so the generator never needs to know item ids.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from funnel._checks import check_is_fitted
from funnel.config import from_mapping
from funnel.exceptions import ArtifactError, ConfigError, ModelFitError
from funnel.generative.denoisers import (
    CFGDenoiser,
    HistoryEncoder,
    HistoryEncoderConfig,
    MLPConfig,
    MLPDenoiser,
    VPDenoiser,
)
from funnel.generative.sampling import get_sampler
from funnel.generative.schedules import VPSchedule, get_sigmas
from funnel.generative.training import train

DIFFUSION_SAMPLERS = ("ddpm", "ddim", "sde", "pfode")


@dataclass(frozen=True)
class DreamRecConfig:
    """Hyperparameters of :class:`DreamRec` (saved with the weights; unknown keys refused)."""

    history_len: int = 10
    dim: int = 64
    heads: int = 2
    layers: int = 1
    hidden: tuple[int, ...] = (256, 256)
    p_uncond: float = 0.1
    guidance: float = 2.0
    schedule: str = "linear"
    noise_scale: float = 1.0
    sampler: str = "ddim"
    steps: int = 10
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("history_len", "dim", "heads", "layers", "steps", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"The '{name}' parameter must be an int >= 1. Got {value!r}.")
        if self.sampler not in DIFFUSION_SAMPLERS:
            raise ConfigError(
                f"The 'sampler' parameter must be one of {DIFFUSION_SAMPLERS}. "
                f"Got {self.sampler!r}."
            )
        if not 0.0 <= self.p_uncond < 1.0:
            raise ConfigError(f"The 'p_uncond' parameter must be in [0, 1). Got {self.p_uncond!r}.")
        if self.dim % self.heads:
            raise ConfigError(f"'dim' ({self.dim}) must be divisible by 'heads' ({self.heads}).")


class DreamRecNetwork(nn.Module):
    """History encoder + conditional x0-denoiser over item-embedding space."""

    def __init__(self, item_dim: int, config: DreamRecConfig) -> None:
        super().__init__()
        self.encoder = HistoryEncoder(HistoryEncoderConfig(
            input_dim=item_dim, dim=config.dim, heads=config.heads, layers=config.layers,
            max_len=config.history_len,
        ))
        self.denoiser = MLPDenoiser(MLPConfig(
            dim=item_dim, hidden=config.hidden, time_dim=32, cond_dim=config.dim,
        ))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.denoiser(x, t, cond)


def _histories_tensor(histories: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """Right-aligned (B, length) int64 item indices, -1 where there is no item."""
    out = torch.full((len(histories), length), -1, dtype=torch.int64)
    for row, hist in enumerate(histories):
        tail = list(hist)[-length:]
        if tail:
            out[row, length - len(tail):] = torch.as_tensor(tail, dtype=torch.int64)
    return out


class DreamRec:
    """Generate the next item's embedding from the history, then look up the nearest items.

    Parameters
    ----------
    config : DreamRecConfig, optional
        All hyperparameters as one typed, frozen value.

    Example
    -------
    >>> model = DreamRec(DreamRecConfig(epochs=5)).fit(sequences, item_vectors)  # doctest: +SKIP
    >>> ids, scores = model.recommend([[3, 17, 5]], k=20)  # doctest: +SKIP
    """

    def __init__(self, config: DreamRecConfig | None = None) -> None:
        self.config = config if config is not None else DreamRecConfig()

    def _schedule(self) -> VPSchedule:
        return VPSchedule(kind=self.config.schedule, scale=self.config.noise_scale)

    def fit(
        self, sequences: Sequence[Sequence[int]], item_vectors: np.ndarray, *,
        callback: Callable[[int, float], None] | None = None,
    ) -> DreamRec:
        """Train on item-index sequences (time order); every next item is a target."""
        cfg = self.config
        vectors = np.asarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] < 2:
            raise ValueError(
                f"The 'item_vectors' parameter must be 2-D with >= 2 rows. Got {vectors.shape}."
            )
        n_items = vectors.shape[0]
        hists: list[list[int]] = []
        targets: list[int] = []
        for seq in sequences:
            seq = list(seq)
            bad = [i for i in seq if not 0 <= int(i) < n_items]
            if bad:
                raise ValueError(
                    f"sequences hold item index {bad[0]!r}; expected 0 <= index < {n_items}"
                )
            for j in range(1, len(seq)):
                hists.append(seq[max(0, j - cfg.history_len):j])
                targets.append(int(seq[j]))
        if not targets:
            raise ModelFitError("no training pairs: every sequence has fewer than 2 items")
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        table = torch.from_numpy(vectors / np.maximum(norms, 1e-12))
        net = DreamRecNetwork(table.shape[1], cfg)
        schedule = self._schedule()
        hist_t = _histories_tensor(hists, cfg.history_len)
        target_t = torch.as_tensor(targets)

        def loss(model: nn.Module, batch: Sequence[torch.Tensor], g: torch.Generator
                 ) -> torch.Tensor:
            assert isinstance(model, DreamRecNetwork)  # train() hands back ``net``
            idx, tgt = batch
            x0 = table[tgt]  # (B, d)
            cond = model.encoder(table[idx.clamp_min(0)], idx >= 0)  # (B, dim)
            drop = torch.rand(len(tgt), generator=g) < cfg.p_uncond
            cond = torch.where(drop[:, None], model.denoiser.null_cond.expand_as(cond), cond)
            t = 1e-3 + (1 - 1e-3) * torch.rand(len(tgt), generator=g)
            ab = schedule.alpha_bar(t).to(torch.float32)[:, None]
            x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=g)
            return ((model(x_t, t.to(torch.float32), cond) - x0) ** 2).sum(-1).mean()

        steps = cfg.epochs * max(1, math.ceil(len(targets) / cfg.batch_size))
        self.loss_trace_ = train(net, [hist_t, target_t], loss, steps=steps,
                                 batch_size=cfg.batch_size, lr=cfg.lr, generator=gen,
                                 callback=callback)
        self.network_ = net
        self.item_table_ = table
        return self

    def generate(
        self, histories: Sequence[Sequence[int]], *, sampler: str | None = None,
        steps: int | None = None, guidance: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Generated next-item embeddings (B, d); an empty history samples unconditionally."""
        check_is_fitted(self, "network_")
        cfg = self.config
        name = sampler or cfg.sampler
        if name not in DIFFUSION_SAMPLERS:
            raise ValueError(
                f"The 'sampler' parameter must be one of {DIFFUSION_SAMPLERS}. Got {name!r}."
            )
        gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
        idx = _histories_tensor(histories, cfg.history_len)
        net = self.network_
        with torch.no_grad():
            cond = net.encoder(self.item_table_[idx.clamp_min(0)], idx >= 0)
            empty = (idx < 0).all(dim=1)
            cond = torch.where(empty[:, None], net.denoiser.null_cond.expand_as(cond), cond)
        schedule = self._schedule()
        sigmas = get_sigmas(schedule, steps or cfg.steps)
        denoiser = CFGDenoiser(VPDenoiser(net, schedule, prediction="x0"),
                               cfg.guidance if guidance is None else guidance)
        d = self.item_table_.shape[1]
        x = torch.randn(len(histories), d, generator=gen) * math.sqrt(1 + float(sigmas[0]) ** 2)
        return get_sampler(name)(denoiser, x, sigmas, extra_args={"cond": cond}, generator=gen)

    def recommend(
        self, histories: Sequence[Sequence[int]], k: int = 100, *, exclude_history: bool = True,
        sampler: str | None = None, steps: int | None = None, guidance: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Item indices (B, k) and inner-product scores of the items nearest the generated
        embeddings (exact search in numpy; the history's items are excluded by default);
        ``sampler``, ``steps``, ``guidance`` and ``generator`` go to :meth:`generate`."""
        check_is_fitted(self, "network_")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"The 'k' parameter must be an int >= 1. Got {k!r} instead.")
        generated = self.generate(histories, sampler=sampler, steps=steps, guidance=guidance,
                                  generator=generator).numpy()  # (B, d)
        scores = generated @ self.item_table_.numpy().T  # (B, n_items)
        if exclude_history:
            for row, hist in enumerate(histories):
                scores[row, list(hist)] = -np.inf
        k = min(k, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(scores, top, axis=1)

    def save(self, directory: Path) -> None:
        """``config.json`` + ``weights.safetensors`` (network and the item table)."""
        check_is_fitted(self, "network_")
        directory.mkdir(parents=True, exist_ok=True)
        cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.config).items()}
        (directory / "config.json").write_text(json.dumps({"config": cfg}, indent=2))
        state = {f"net.{k}": v.contiguous() for k, v in self.network_.state_dict().items()}
        state["item_table"] = self.item_table_.contiguous()
        save_file(state, str(directory / "weights.safetensors"))

    @classmethod
    def load(cls, directory: Path) -> DreamRec:
        path = directory / "config.json"
        if not path.is_file():
            raise ArtifactError(f"{path}: missing; not a saved DreamRec directory")
        cfg = from_mapping(DreamRecConfig, json.loads(path.read_text())["config"], where=str(path))
        state = load_file(str(directory / "weights.safetensors"))
        model = cls(cfg)
        table = state.pop("item_table")
        net = DreamRecNetwork(table.shape[1], cfg)
        net.load_state_dict({k[len("net."):]: v for k, v in state.items()})
        net.eval()
        model.network_, model.item_table_ = net, table
        return model
