"""Strong simple baselines the diffusion recommenders must be compared with in the same run.

EASE (Steck 2019, closed form), item-kNN (cosine with shrinkage), RP3beta (Paudel et al. 2016,
as in Dacrema et al.'s "troubling analysis") and a MultVAE-like autoencoder (Liang et al. 2018).
All follow one estimator shape: hyperparameters in ``__init__``, ``fit(X)`` on a binary
user x item CSR matrix, ``score(X)`` -> dense (U, I).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from funnel._checks import check_is_fitted, positive_float, positive_int, validate_params


def _check_matrix(X: sp.spmatrix, name: str = "X", n_items: int | None = None) -> sp.csr_matrix:
    if not sp.issparse(X):
        raise TypeError(f"The '{name}' parameter must be a scipy sparse matrix. Got {type(X)}.")
    X = sp.csr_matrix(X, dtype=np.float32)
    if n_items is not None and X.shape[1] != n_items:
        raise ValueError(
            f"The '{name}' parameter must have {n_items} item columns (as in fit). "
            f"Got {X.shape[1]} instead."
        )
    return X


class EASE:
    """EASE^R: ``B = I - P diag(1/diag(P))`` with ``P = (X'X + lambda I)^-1``, zero diagonal."""

    def __init__(self, *, l2: float = 200.0) -> None:
        self.l2 = l2

    def fit(self, X: sp.spmatrix) -> EASE:
        validate_params({"l2": self.l2}, {"l2": (positive_float, "a float > 0")})
        X = _check_matrix(X)
        gram = (X.T @ X).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights_ = b.astype(np.float32)
        return self

    def score(self, X: sp.spmatrix) -> np.ndarray:
        check_is_fitted(self, "weights_")
        X = _check_matrix(X, n_items=self.weights_.shape[0])
        return np.asarray(X @ self.weights_)


class ItemKNN:
    """Item-based kNN: cosine similarity with shrinkage, top ``neighbors`` per item."""

    def __init__(self, *, neighbors: int = 100, shrink: float = 10.0) -> None:
        self.neighbors = neighbors
        self.shrink = shrink

    def fit(self, X: sp.spmatrix) -> ItemKNN:
        validate_params(
            {"neighbors": self.neighbors, "shrink": self.shrink},
            {"neighbors": (positive_int, "an int > 0"),
             "shrink": (lambda v: isinstance(v, int | float) and v >= 0, "a float >= 0")},
        )
        X = _check_matrix(X)
        co = (X.T @ X).toarray().astype(np.float32)  # (I, I)
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + self.shrink + 1e-8)
        np.fill_diagonal(sim, 0.0)
        k = min(self.neighbors, sim.shape[0] - 1)
        if k < sim.shape[0] - 1:
            drop = np.argpartition(-sim, k, axis=0)[k:]  # rows outside each column's top k
            np.put_along_axis(sim, drop, 0.0, axis=0)
        self.similarity_ = sim
        return self

    def score(self, X: sp.spmatrix) -> np.ndarray:
        check_is_fitted(self, "similarity_")
        X = _check_matrix(X, n_items=self.similarity_.shape[0])
        return np.asarray(X @ self.similarity_)


class RP3beta:
    """RP3beta: 3-step random walk item -> user -> item, damped by ``popularity ** beta``.

    ``W = Piu^alpha @ Pui^alpha`` (row-stochastic transitions raised elementwise to ``alpha``),
    column ``j`` divided by ``pop_j ** beta``, zero diagonal, top ``neighbors`` per row; scores are
    ``X @ W`` (Paudel et al. 2016; Dacrema et al. 2019's implementation).
    """

    def __init__(self, *, alpha: float = 1.0, beta: float = 0.5, neighbors: int = 100) -> None:
        self.alpha = alpha
        self.beta = beta
        self.neighbors = neighbors

    def fit(self, X: sp.spmatrix) -> RP3beta:
        validate_params(
            {"alpha": self.alpha, "beta": self.beta, "neighbors": self.neighbors},
            {"alpha": (positive_float, "a float > 0"),
             "beta": (lambda v: isinstance(v, int | float) and v >= 0, "a float >= 0"),
             "neighbors": (positive_int, "an int > 0")},
        )
        X = _check_matrix(X).astype(np.float64)
        pui = _row_normalize(X).power(self.alpha)  # (U, I) user -> item
        piu = _row_normalize(X.T.tocsr()).power(self.alpha)  # (I, U) item -> user
        pop = np.asarray(X.sum(axis=0)).ravel()
        damp = np.zeros_like(pop)
        damp[pop > 0] = pop[pop > 0] ** -self.beta
        sim = (piu @ pui).toarray() * damp[None, :]  # (I, I)
        np.fill_diagonal(sim, 0.0)
        k = min(self.neighbors, sim.shape[1] - 1)
        if k < sim.shape[1] - 1:
            drop = np.argpartition(-sim, k, axis=1)[:, k:]  # columns outside each row's top k
            np.put_along_axis(sim, drop, 0.0, axis=1)
        self.similarity_ = sim.astype(np.float32)
        return self

    def score(self, X: sp.spmatrix) -> np.ndarray:
        check_is_fitted(self, "similarity_")
        X = _check_matrix(X, n_items=self.similarity_.shape[0])
        return np.asarray(X @ self.similarity_)


def _row_normalize(X: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(X.sum(axis=1)).ravel()
    sums[sums == 0] = 1.0  # empty rows stay empty
    return sp.csr_matrix(sp.diags(1.0 / sums) @ X)


def linear_weights(model: object) -> np.ndarray:
    """The (I, I) item-item matrix ``W`` of a fitted linear baseline (scores are ``X @ W``)."""
    for name in ("weights_", "similarity_"):
        if getattr(model, name, None) is not None:
            return getattr(model, name)
    raise TypeError(
        f"The 'prior' must be a fitted EASE, ItemKNN or RP3beta. Got {type(model).__name__}."
    )


class _VAENetwork(nn.Module):
    """MultVAE encoder/decoder: input dropout, tanh MLP, Gaussian latent, softmax output."""

    def __init__(self, n_items: int, hidden: int, latent: int, dropout: float) -> None:
        super().__init__()
        self.n_items = n_items
        self.drop = nn.Dropout(dropout)
        self.enc = nn.Sequential(
            nn.Linear(n_items, hidden), nn.Tanh(), nn.Linear(hidden, 2 * latent)
        )
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, n_items))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.drop(nn.functional.normalize(x, dim=-1))
        mu, logvar = self.enc(h).chunk(2, dim=-1)  # (B, latent) each
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.dec(z), mu, logvar


class MultVAE:
    """A MultVAE-like autoencoder with multinomial likelihood and KL annealing to ``beta``."""

    def __init__(
        self, *, hidden: int = 600, latent: int = 200, dropout: float = 0.5, beta: float = 0.2,
        epochs: int = 100, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.latent = latent
        self.dropout = dropout
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed

    def fit(self, X: sp.spmatrix) -> MultVAE:
        validate_params(
            {"hidden": self.hidden, "latent": self.latent, "epochs": self.epochs,
             "batch_size": self.batch_size, "lr": self.lr},
            {"hidden": (positive_int, "an int > 0"), "latent": (positive_int, "an int > 0"),
             "epochs": (positive_int, "an int > 0"), "batch_size": (positive_int, "an int > 0"),
             "lr": (positive_float, "a float > 0")},
        )
        X = _check_matrix(X)
        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        net = _VAENetwork(X.shape[1], self.hidden, self.latent, self.dropout)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        dense = torch.from_numpy(X.toarray())
        total = self.epochs * max(1, -(-X.shape[0] // self.batch_size))
        step = 0
        net.train()
        for _ in range(self.epochs):
            perm = torch.randperm(X.shape[0], generator=gen)
            for start in range(0, X.shape[0], self.batch_size):
                x = dense[perm[start:start + self.batch_size]]
                logits, mu, logvar = net(x)
                nll = -(torch.log_softmax(logits, dim=-1) * x).sum(-1).mean()
                kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1).mean()
                anneal = self.beta * min(1.0, step / (0.5 * total))
                opt.zero_grad(set_to_none=True)
                (nll + anneal * kl).backward()
                opt.step()
                step += 1
        net.eval()
        self.network_ = net
        return self

    def score(self, X: sp.spmatrix) -> np.ndarray:
        check_is_fitted(self, "network_")
        X = _check_matrix(X, n_items=self.network_.n_items)
        with torch.no_grad():
            logits, _, _ = self.network_(torch.from_numpy(X.toarray()))
        return logits.numpy()
