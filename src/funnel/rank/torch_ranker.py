"""The PyTorch estimator shared by LR, FM, FFM, Wide&Deep, DeepFM and DCNv2.

The estimator owns training (Adam, mini-batches, early stopping on validation logloss, seeds,
progress); the network (``rank.models``) only maps ``(idx, val)`` to logits (STYLE P2).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from funnel._checks import (
    check_is_fitted,
    non_negative_int,
    positive_float,
    positive_int,
    unit_interval,
    validate_params,
)
from funnel.exceptions import ArtifactError, ModelFitError
from funnel.features.specs import Encoded, FeatureSet, Spec, as_columns
from funnel.rank.base import Ranker, RankingData, fix_position, specs_of, undo_negative_sampling
from funnel.rank.metrics import auc, logloss
from funnel.rank.models import NETWORKS, DINConfig, NetworkConfig

_PARAMS = {
    "embedding_dim": (positive_int, "a positive int"),
    "batch_size": (positive_int, "a positive int"),
    "epochs": (positive_int, "a positive int"),
    "patience": (non_negative_int, "a non-negative int"),
    "learning_rate": (positive_float, "a positive float"),
    "weight_decay": (lambda v: isinstance(v, int | float) and v >= 0, "a float >= 0"),
    "dropout": (lambda v: unit_interval(v) and v < 1, "a float in [0, 1)"),
    "num_cross_layers": (positive_int, "a positive int"),
    "cross_numeric": (lambda v: isinstance(v, bool), "True or False"),
    "hidden_units": (
        lambda v: isinstance(v, tuple | list) and all(positive_int(h) for h in v),
        "a tuple of positive ints",
    ),
    "seed": (non_negative_int, "a non-negative int"),
}


class TorchRanker(Ranker):
    """Base of the neural CTR rankers; subclasses set ``name`` (a ``NETWORKS`` key), and one
    whose network needs more than :class:`NetworkConfig` also ``config_class`` and
    :meth:`_network_config` (``rank.din``)."""

    config_class: type[NetworkConfig] | type[DINConfig] = NetworkConfig

    def __init__(
        self,
        features: Sequence[Spec | Mapping[str, Any]] | FeatureSet = (),
        *,
        embedding_dim: int = 8,
        hidden_units: tuple[int, ...] = (64, 32),
        dropout: float = 0.0,
        num_cross_layers: int = 2,
        cross_numeric: bool = False,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-3,
        batch_size: int = 1024,
        epochs: int = 10,
        patience: int = 2,
        position_column: str = "position",
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.features = features
        self.embedding_dim = embedding_dim
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.num_cross_layers = num_cross_layers
        self.cross_numeric = cross_numeric
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.position_column = position_column
        self.seed = seed
        self.verbose = verbose

    def get_params(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "embedding_dim": self.embedding_dim,
            "hidden_units": list(self.hidden_units),
            "dropout": self.dropout,
            "num_cross_layers": self.num_cross_layers,
            "cross_numeric": self.cross_numeric,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "patience": self.patience,
            "position_column": self.position_column,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    # ---- training ---------------------------------------------------------------------------
    def _feature_specs(self) -> list[Spec]:
        """The specs the feature set is fitted from (``features``, checked non-empty)."""
        specs = specs_of(self.features)
        if not specs:
            raise ValueError("features must list at least one feature spec; got none")
        return specs

    def _network_config(self, fs: FeatureSet) -> NetworkConfig | DINConfig:
        return NetworkConfig(
            num_features=fs.num_features,
            num_fields=fs.num_fields,
            slot_fields=tuple(int(f) for f in fs.slot_fields),
            embedding_dim=self.embedding_dim,
            hidden_units=tuple(self.hidden_units),
            dropout=float(self.dropout),
            num_cross_layers=self.num_cross_layers,
            fm_fields=tuple(
                f for f, s in enumerate(fs.specs) if self.cross_numeric or s.type != "numeric"
            ),
        )

    def _prepare(
        self, train: RankingData, valid: RankingData | None
    ) -> tuple[Encoded, Encoded | None]:
        """Check the parameters, fit the feature specs, build a fresh network (seeded): what
        every trainer, one process or many, does before its first batch. Returns the encoded
        train and validation sets."""
        self._check_fit(len(train), "train")
        self._new_network(FeatureSet(self._feature_specs()).fit(train.columns),
                          train.negative_rate)
        enc = self.features_.transform(train.columns)
        venc = self.features_.transform(valid.columns) if valid is not None else None
        return enc, venc

    def _check_fit(self, n_rows: int, source: str) -> None:
        """The parameters, the network's existence and a non-empty training set (``source``
        names it in the error)."""
        validate_params(self.get_params(), _PARAMS)
        if self.name not in NETWORKS:
            raise ModelFitError(f"{type(self).__name__} has no network; use get_ranker(name)")
        if n_rows == 0:
            raise ModelFitError(f"{source} has 0 rows; expected at least one labelled row")

    def _new_network(self, features: FeatureSet, negative_rate: float) -> None:
        """The fitted features and a fresh network seeded by ``seed``: the same starting
        weights in every process that trains it."""
        self.features_ = features
        torch.manual_seed(self.seed)
        self.network_config_ = self._network_config(features)
        self.network_ = NETWORKS[self.name](self.network_config_)
        self.negative_rate_ = float(negative_rate)

    def fit(self, train: RankingData, valid: RankingData | None = None) -> TorchRanker:
        t0 = time.perf_counter()
        enc, venc = self._prepare(train, valid)
        t1, c1 = time.perf_counter(), time.process_time()
        self.history_ = self._train(enc, train.label, venc, None if valid is None else valid.label)
        # wall and CPU seconds: on a shared machine the CPU figure is the stable one
        self.fit_seconds_ = {"features": t1 - t0, "train": time.perf_counter() - t1,
                             "train_cpu": time.process_time() - c1}
        return self

    def _train(
        self, enc: Encoded, y: np.ndarray, venc: Encoded | None, vy: np.ndarray | None
    ) -> list[dict[str, float]]:
        net = self.network_
        opts = _optimizers(net, self.learning_rate, self.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()
        idx_t, val_t = torch.from_numpy(enc.idx), torch.from_numpy(enc.val)
        y_t = torch.from_numpy(np.asarray(y, dtype=np.float32))
        gen = torch.Generator().manual_seed(self.seed)
        n, bs = len(y_t), self.batch_size
        n_batches = (n + bs - 1) // bs
        history: list[dict[str, float]] = []
        stopper = EarlyStopping(self.patience, has_valid=venc is not None)
        progress = _progress(self.verbose, f"{self.name}", self.epochs * n_batches)
        with progress:
            task = progress.add_task(self.name, total=self.epochs * n_batches, info="")
            for epoch in range(self.epochs):
                net.train()
                perm = torch.randperm(n, generator=gen)
                # one gather per epoch; batches are then contiguous views (same rows, same order)
                idx_e, val_e, y_e = idx_t[perm], val_t[perm], y_t[perm]
                total = 0.0
                for b in range(n_batches):
                    lo, hi = b * bs, min(n, (b + 1) * bs)
                    for opt in opts:
                        opt.zero_grad(set_to_none=True)
                    loss = loss_fn(net(idx_e[lo:hi], val_e[lo:hi]), y_e[lo:hi])
                    loss.backward()
                    for opt in opts:
                        opt.step()
                    total += loss.detach().item() * (hi - lo)
                    if self.verbose and b % 20 == 0:
                        progress.update(task, info=f"loss {total / hi:.4f}")
                    if self.verbose:
                        progress.advance(task)
                record = epoch_record(self, epoch, total / n, venc, vy)
                if "valid_logloss" in record:
                    progress.update(
                        task,
                        info=f"loss {record['train_logloss']:.4f} "
                        f"valid {record['valid_logloss']:.4f} auc {record.get('valid_auc', 0):.4f}",
                    )
                history.append(record)
                if stopper.update(net, record):
                    break
        stopper.restore(net)
        return history

    # ---- prediction ---------------------------------------------------------------------------
    @torch.inference_mode()
    def _raw_proba(self, enc: Encoded, chunk: int = 65536) -> np.ndarray:
        net = self.network_
        was_training = net.training
        if was_training:  # Module.train() walks every submodule: not on each request
            net.eval()
        out = []
        for s in range(0, len(enc), chunk):
            idx = torch.from_numpy(enc.idx[s : s + chunk])
            val = torch.from_numpy(enc.val[s : s + chunk])
            out.append(torch.sigmoid(net(idx, val)).numpy())
        if was_training:
            net.train()
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def predict_proba(self, X: Any, *, at_position: int | None = None) -> np.ndarray:
        check_is_fitted(self, "network_")
        columns = as_columns(X)
        if at_position is not None:
            columns = fix_position(columns, self.position_column, at_position)
        p = self._raw_proba(self.features_.transform(columns))
        return undo_negative_sampling(p, self.negative_rate_)

    def predict_encoded(self, enc: Encoded) -> np.ndarray:
        """Probabilities from already-encoded input (benchmarks, batch scoring)."""
        check_is_fitted(self, "network_")
        return undo_negative_sampling(self._raw_proba(enc), self.negative_rate_)

    # ---- persistence ---------------------------------------------------------------------------
    def _save_model(self, directory: Path) -> dict[str, Any]:
        state = {k: v.contiguous() for k, v in self.network_.state_dict().items()}
        save_file(state, str(directory / "weights.safetensors"))
        cfg = {k: list(v) if isinstance(v, tuple) else v
               for k, v in asdict(self.network_config_).items()}
        return {"network": cfg, "negative_rate": self.negative_rate_, "history": self.history_}

    def _load_model(self, directory: Path, state: Mapping[str, Any]) -> None:
        # lists back to tuples; a key older artifacts lack takes its default (fm_fields: all)
        cfg: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                               for k, v in state["network"].items()}  # parsed JSON
        self.network_config_ = self.config_class(**cfg)
        self.network_ = NETWORKS[self.name](self.network_config_)
        weights = directory / "weights.safetensors"
        if not weights.exists():
            raise ArtifactError(f"{weights}: missing")
        self.network_.load_state_dict(load_file(str(weights)))
        self.network_.eval()
        self.negative_rate_ = float(state["negative_rate"])
        self.history_ = list(state.get("history", []))


def epoch_record(
    ranker: TorchRanker, epoch: int, train_logloss: float, venc: Encoded | None,
    vy: np.ndarray | None,
) -> dict[str, float]:
    """One epoch's history entry: train logloss, and validation logloss/AUC when given."""
    record = {"epoch": float(epoch + 1), "train_logloss": float(train_logloss)}
    if venc is not None and vy is not None:
        p = ranker._raw_proba(venc)
        record["valid_logloss"] = logloss(vy, p)
        if 0 < vy.sum() < len(vy):
            record["valid_auc"] = auc(vy, p)
    return record


class EarlyStopping:
    """Keeps the best weights by validation logloss (train logloss without validation) and
    says when ``patience`` epochs in a row failed to improve it; one rule for every trainer."""

    def __init__(self, patience: int, *, has_valid: bool) -> None:
        self.patience = patience
        self.has_valid = has_valid
        self.best = np.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def update(self, net: nn.Module, record: Mapping[str, float]) -> bool:
        """Record an epoch; True when training should stop."""
        score = record.get("valid_logloss", record["train_logloss"])
        if score < self.best - 1e-6:
            self.best, self.bad = score, 0
            self.best_state = copy.deepcopy(net.state_dict())
            return False
        self.bad += 1
        return self.has_valid and self.bad > self.patience

    def restore(self, net: nn.Module) -> None:
        """Load the best weights seen and switch to inference mode."""
        if self.best_state is not None:
            net.load_state_dict(self.best_state)
        net.eval()


def _optimizers(net: nn.Module, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
    """SparseAdam for embedding tables built with ``sparse=True``, Adam for everything else.

    No network builds a sparse table today (``layers.embeddings.lookup`` returns a dense
    gradient), so every table is in the Adam group and ``weight_decay`` (coupled L2) reaches the
    embedding rows too: that decay is what keeps rare id/cross rows from overfitting (measured
    in ``benchmarks/RESULTS.md``, ranking).
    """
    sparse_ids = {
        id(m.weight) for m in net.modules() if isinstance(m, nn.Embedding) and m.sparse
    }
    sparse = [p for p in net.parameters() if id(p) in sparse_ids]
    dense = [p for p in net.parameters() if id(p) not in sparse_ids]
    opts: list[torch.optim.Optimizer] = []
    if sparse:
        opts.append(torch.optim.SparseAdam(sparse, lr=lr))
    if dense:
        opts.append(torch.optim.Adam(dense, lr=lr, weight_decay=weight_decay, fused=True))
    return opts


def _progress(verbose: bool, label: str, total: int) -> Any:
    """A rich progress bar with a free-text ``info`` column, or a silent stand-in."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        disable=not verbose,
        transient=False,
    )


class LRRanker(TorchRanker):
    """Logistic regression on hashed/encoded features."""

    name = "lr"


class FMRanker(TorchRanker):
    """Factorization machine (Rendle 2010)."""

    name = "fm"


class FFMRanker(TorchRanker):
    """Field-aware factorization machine (Juan et al. 2016)."""

    name = "ffm"


class WideDeepRanker(TorchRanker):
    """Wide & Deep (Cheng et al. 2016)."""

    name = "widedeep"


class DeepFMRanker(TorchRanker):
    """DeepFM (Guo et al. 2017)."""

    name = "deepfm"


class DCNv2Ranker(TorchRanker):
    """DCN-V2 (Wang et al. 2021)."""

    name = "dcnv2"
