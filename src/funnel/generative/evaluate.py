"""The DiffRec-protocol comparison: baselines vs every sampler, tuned with the same budget.

Every method gets the same number of configurations (``budget``), each trained on the train
part and scored on the valid part; the best by validation Recall@20 is then scored on test with
the train histories as input and train + valid items excluded (DiffRec's evaluation code).
Diffusion configurations are selected with DDIM-10, flows with 4 Euler steps, NICE with its one
pass; the selected models are then run with every sampler and step count of the table.

The prior-based models (:mod:`funnel.generative.refine`) start from the linear baseline that won
on validation (EASE, item-kNN or RP3beta): ``flowcf`` (flow prior -> interactions, selected with
one Euler step), ``priorddim`` (denoiser conditioned on the prior, selected with DDIM-10),
``priorstart`` (the DiffRec winner's DDIM started from history + prior scores; no retraining),
``blendddim`` / ``blendstart`` (DDIM-10's / priorstart's scores mixed with the prior's, the
weight tuned on valid). ``best_generative_vs_best_baseline`` takes the best generative row on
test (the contract's key); ``valid_picked_generative_vs_best_baseline`` takes the family that
won on validation, the honest single pick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from funnel.generative.baselines import EASE, ItemKNN, MultVAE, RP3beta
from funnel.generative.diffrec import DiffRec, DiffRecConfig
from funnel.generative.metrics import evaluate_scores
from funnel.generative.refine import PriorRefineConfig, PriorRefiner, blend
from funnel.generative.splits import InteractionSplit

K = 20
FULL_DDPM_STEPS = 100
SAMPLER_TABLE: tuple[tuple[str, int], ...] = (
    ("ddpm", FULL_DDPM_STEPS), ("ddim", 10), ("ddim", 5), ("pfode", 10), ("sde", 50),
    ("rf", 1), ("rf", 2), ("rf", 4), ("nice", 1),
)
"""(sampler, steps) rows of the benchmark table, as the issue lists them."""
PRIOR_TABLE: tuple[tuple[str, int], ...] = (
    ("flowcf", 1), ("flowcf", 2), ("priorddim", 10), ("priorddim", 2), ("priorstart", 10),
    ("priorstart", 5), ("blendddim", 10), ("blendstart", 10), ("blendstart", 5),
)
"""(method, steps) rows of the models that start from the best linear baseline (issue 22)."""
BASELINES = ("ease", "itemknn", "rp3beta", "multvae")
PRIORS = ("ease", "itemknn", "rp3beta")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Budget:
    """How much each method may spend: configurations tried and neural-training epochs."""

    configs: int = 4
    epochs: int = 60
    hidden: int = 400

    @classmethod
    def quick(cls) -> Budget:
        return cls(configs=2, epochs=20, hidden=200)


def _grids(budget: Budget, seed: int = 0) -> dict[str, list[Any]]:
    e, h = budget.epochs, budget.hidden
    base = DiffRecConfig(epochs=e, hidden=(h,), seed=seed)
    return {
        "ease": [EASE(l2=v) for v in (200.0, 50.0, 500.0, 1000.0)],
        "itemknn": [ItemKNN(neighbors=n, shrink=s) for n, s in
                    ((200, 10.0), (50, 10.0), (100, 0.0), (400, 50.0))],
        "rp3beta": [RP3beta(alpha=a, beta=b, neighbors=k) for a, b, k in
                    ((0.5, 0.5, 100), (0.8, 0.3, 200), (1.0, 0.5, 100), (0.5, 0.3, 50))],
        "multvae": [MultVAE(hidden=hh, latent=lat, beta=b, epochs=e, seed=seed) for hh, lat, b in
                    ((h, 200, 0.2), (h // 2, 100, 0.2), (h, 200, 0.5), (h // 2, 100, 0.05))],
        "diffusion": [DiffRec(replace(base, noise_scale=ns, t_start=ts)) for ns, ts in
                      ((0.01, 0.5), (0.005, 1.0), (0.02, 0.25), (0.001, 1.0))],
        "flow": [DiffRec(replace(base, objective="flow", noise_scale=ns, t_start=ts))
                 for ns, ts in ((0.1, 0.3), (0.3, 0.5), (1.0, 0.3), (0.1, 0.8))],
        "nice": [DiffRec(replace(base, objective="nice", nice_couplings=c, nice_cond_dim=d))
                 for c, d in ((2, 200), (4, 200), (2, 100), (4, 400))],
    }


def _prior_grids(budget: Budget, prior: Any, seed: int = 0) -> dict[str, list[PriorRefiner]]:
    base = PriorRefineConfig(epochs=budget.epochs, hidden=(budget.hidden,), seed=seed)
    short = max(1, budget.epochs // 4)  # a short fit stays close to the prior
    flows = [replace(base, mask_rate=m, epochs=e)
             for m, e in ((0.3, short), (0.3, budget.epochs), (0.5, short), (0.1, budget.epochs))]
    diffs = [replace(base, objective="diffusion", start=st, t_start=ts)
             for st, ts in (("prior", 0.5), ("history", 0.5), ("prior", 0.25), ("history", 0.25))]
    return {"flowcf": [PriorRefiner(prior, c) for c in flows],
            "priorddim": [PriorRefiner(prior, c) for c in diffs]}


BLEND_WEIGHTS = (0.5, 0.25, 0.75, 0.1)
"""Weights of the sampler in :func:`blend`, tried in this order up to ``budget.configs``."""
PRIOR_WEIGHTS = (1.0, 2.0, 0.5, 4.0)
"""Weights of the normalised prior added to the start of ``priorstart``, tried in this order."""
VALID_PICK = {"diffusion": "ddim_10", "flow": "rf_4", "nice": "nice_1", "flowcf": "flowcf_1",
              "priorddim": "priorddim_10", "priorstart": "priorstart_10",
              "blendddim": "blendddim_10", "blendstart": "blendstart_10"}
"""The row each generative family was tuned with (for the pick made on validation only)."""


def _normalized(scores: np.ndarray) -> np.ndarray:
    """Rows divided by their largest absolute value (prior scores on the history's 0/1 scale)."""
    top = np.abs(scores).max(axis=1, keepdims=True)
    return (scores / np.maximum(top, 1e-8)).astype(np.float32)

_SELECT_WITH = {"diffusion": ("ddim", 10), "flow": ("rf", 4), "nice": ("nice", 1),
                "flowcf": ("rf", 1), "priorddim": ("ddim", 10)}


def _score(model: Any, X: sp.csr_matrix, family: str, sampler: tuple[str, int] | None = None
           ) -> np.ndarray:
    if family in _SELECT_WITH:
        name, steps = sampler or _SELECT_WITH[family]
        return model.score(X, sampler=name, steps=steps, generator=torch.Generator().manual_seed(0))
    return model.score(X)


def compare(
    split: InteractionSplit, budget: Budget | None = None, *, seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Tune every method on valid, score the winners on test; the benchmark's flat JSON keys.

    ``seed`` seeds every neural model (initialisation, minibatches, sampler noise).
    """
    budget = budget or Budget()
    say = progress or (lambda _msg: None)
    train, valid, test = split.matrix("train"), split.matrix("valid"), split.matrix("test")
    seen = (train + valid).tocsr()
    seen.data[:] = 1.0
    out: dict[str, float] = {"users": float(split.n_users), "items": float(split.n_items)}
    best: dict[str, Any] = {}
    for family, grid in _grids(budget, seed).items():
        scored: list[tuple[float, Any]] = []
        for model in grid[: budget.configs]:
            say(f"tuning {family}: config {len(scored) + 1}/{budget.configs}")
            started = time.perf_counter()
            model.fit(train)
            out[f"fit_seconds_{family}"] = time.perf_counter() - started
            r, _ = evaluate_scores(_score(model, train, family), valid, train, K)
            scored.append((r, model))
        r_best, model = max(scored, key=lambda pair: pair[0])
        out[f"valid_recall20_{family}"] = r_best
        best[family] = model
        if family not in _SELECT_WITH:
            r, n = evaluate_scores(model.score(train), test, seen, K)
            out[f"recall20_{family}"], out[f"ndcg20_{family}"] = r, n
    family_of = {"ddpm": "diffusion", "ddim": "diffusion", "pfode": "diffusion",
                 "sde": "diffusion", "rf": "flow", "nice": "nice"}
    for name, steps in SAMPLER_TABLE:
        say(f"sampling {name} with {steps} steps")
        model = best[family_of[name]]
        started = time.perf_counter()
        scores = _score(model, train, family_of[name], (name, steps))
        elapsed = time.perf_counter() - started
        r, n = evaluate_scores(scores, test, seen, K)
        out[f"recall20_{name}_{steps}"] = r
        out[f"ndcg20_{name}_{steps}"] = n
        out[f"ms_per_user_{name}_{steps}"] = 1000.0 * elapsed / max(1, train.shape[0])
    out.update(_compare_prior_models(split, budget, best, out, seed=seed, progress=say))
    out["best_generative_vs_best_baseline"] = best_vs_baseline(out)[1]
    out["valid_picked_generative_vs_best_baseline"] = valid_picked_vs_baseline(out)[1]
    return out


def _timed(fn: Callable[[], np.ndarray], users: int) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = fn()
    return scores, 1000.0 * (time.perf_counter() - started) / max(1, users)


def _compare_prior_models(
    split: InteractionSplit, budget: Budget, best: dict[str, Any], done: dict[str, float], *,
    seed: int, progress: Progress,
) -> dict[str, float]:
    """The models that start from the best-on-valid linear baseline (issue 22, idea a, b, c)."""
    train, valid, test = split.matrix("train"), split.matrix("valid"), split.matrix("test")
    seen = (train + valid).tocsr()
    seen.data[:] = 1.0
    name = max(PRIORS, key=lambda fam: done[f"valid_recall20_{fam}"])
    prior = best[name]
    out: dict[str, float] = {f"prior_is_{name}": 1.0}
    prior_scores, prior_ms = _timed(lambda: prior.score(train), train.shape[0])
    tuned: dict[str, Any] = {}
    for family, grid in _prior_grids(budget, prior, seed).items():
        scored: list[tuple[float, Any]] = []
        for model in grid[: budget.configs]:
            progress(f"tuning {family} on {name}: config {len(scored) + 1}/{budget.configs}")
            t0 = time.perf_counter()
            model.fit(train)
            out[f"fit_seconds_{family}"] = time.perf_counter() - t0
            scored.append((evaluate_scores(_score(model, train, family), valid, train, K)[0],
                           model))
        out[f"valid_recall20_{family}"], tuned[family] = max(scored, key=lambda pair: pair[0])
    # (a') the diffusion winner's reverse process started from history + lam * prior, lam on valid
    diffusion = best["diffusion"]
    z = _normalized(prior_scores)

    def started(lam: float, steps: int) -> np.ndarray:
        return diffusion.score(train, sampler="ddim", steps=steps, prior=lam * z,
                               generator=torch.Generator().manual_seed(0))

    lams = [(evaluate_scores(started(lam, 10), valid, train, K)[0], lam)
            for lam in PRIOR_WEIGHTS[: budget.configs]]
    out["valid_recall20_priorstart"], lam = max(lams)
    out["priorstart_weight"] = lam
    # (c) blends with the prior: plain DDIM-10 and the prior-started DDIM-10, weight on valid
    sources: dict[str, Callable[[int], np.ndarray]] = {
        "blendddim": lambda s: _score(diffusion, train, "diffusion", ("ddim", s)),
        "blendstart": lambda s: started(lam, s)}
    weight: dict[str, float] = {}
    for method, source in sources.items():
        raw = source(10)
        tried = [(evaluate_scores(blend(prior_scores, raw, w), valid, train, K)[0], w)
                 for w in BLEND_WEIGHTS[: budget.configs]]
        out[f"valid_recall20_{method}"], weight[method] = max(tried)
        out[f"{method}_weight"] = weight[method]
    for method, steps in PRIOR_TABLE:
        progress(f"sampling {method} with {steps} steps")
        if method in sources:
            raw, ms = _timed(partial(sources[method], steps), train.shape[0])
            scores = blend(prior_scores, raw, weight[method])
            ms += prior_ms
        elif method == "priorstart":
            scores, ms = _timed(partial(started, lam, steps), train.shape[0])
            ms += prior_ms
        else:
            sampler = (_SELECT_WITH[method][0], steps)
            model = tuned[method]
            scores, ms = _timed(partial(_score, model, train, method, sampler), train.shape[0])
        r, n = evaluate_scores(scores, test, seen, K)
        out[f"recall20_{method}_{steps}"], out[f"ndcg20_{method}_{steps}"] = r, n
        out[f"ms_per_user_{method}_{steps}"] = ms
    return out


def generative_keys(result: dict[str, float]) -> list[str]:
    """``<method>_<steps>`` of every generative row present in ``result``."""
    rows = SAMPLER_TABLE + PRIOR_TABLE + tuple(("dreamrec_" + n, s) for n, s in DREAMREC_TABLE)
    return [f"{n}_{s}" for n, s in rows if f"recall20_{n}_{s}" in result]


def valid_picked_vs_baseline(result: dict[str, float]) -> tuple[str, float]:
    """The generative family best on validation, its tuned row, and that row's test ratio."""
    bar = max(result[f"recall20_{b}"] for b in BASELINES if f"recall20_{b}" in result)
    family = max((f for f in VALID_PICK if f"valid_recall20_{f}" in result),
                 key=lambda f: result[f"valid_recall20_{f}"])
    key = VALID_PICK[family]
    return key, result[f"recall20_{key}"] / max(bar, 1e-9)


def best_vs_baseline(result: dict[str, float], max_steps: int = 10) -> tuple[str, float]:
    """The best <= ``max_steps`` generative row and its Recall@20 over the best baseline's."""
    bar = max(result[f"recall20_{b}"] for b in BASELINES if f"recall20_{b}" in result)
    keys = [k for k in generative_keys(result) if int(k.rsplit("_", 1)[1]) <= max_steps]
    key = max(keys, key=lambda k: result[f"recall20_{k}"])
    return key, result[f"recall20_{key}"] / max(bar, 1e-9)


def table_rows(result: dict[str, float]) -> list[tuple[str, float, float, float | None]]:
    """(method, Recall@20, NDCG@20, ms per user) rows for printing."""
    rows: list[tuple[str, float, float, float | None]] = []
    for fam in BASELINES:
        if f"recall20_{fam}" in result:
            rows.append((fam, result[f"recall20_{fam}"], result[f"ndcg20_{fam}"], None))
    for key in generative_keys(result):
        name, steps = key.rsplit("_", 1)
        rows.append((f"{name} ({steps} steps)", result[f"recall20_{key}"],
                     result[f"ndcg20_{key}"], result[f"ms_per_user_{key}"]))
    return rows


def target_check(result: dict[str, float]) -> tuple[str, dict[str, float]]:
    """The issue's target: a <=10-step sampler within 2% of full DDPM's Recall@20 at 10x speed.

    Returns the best such sampler's name and its recall ratio / speed-up against full DDPM, and
    its recall ratio against EASE.
    """
    full = f"ddpm_{FULL_DDPM_STEPS}"
    r_full, ms_full = result[f"recall20_{full}"], result[f"ms_per_user_{full}"]
    best_key, best_r = "", -np.inf
    for name, steps in SAMPLER_TABLE:
        key = f"{name}_{steps}"
        if steps <= 10 and name != "ddpm" and result[f"recall20_{key}"] > best_r:
            best_key, best_r = key, result[f"recall20_{key}"]
    return best_key, {
        "fast_sampler_recall_ratio": best_r / r_full if r_full > 0 else float("nan"),
        "fast_sampler_speedup": ms_full / max(result[f"ms_per_user_{best_key}"], 1e-9),
        "diffusion_vs_ease_recall_ratio": best_r / max(result["recall20_ease"], 1e-9),
    }


DREAMREC_TABLE: tuple[tuple[str, int], ...] = (("ddpm", FULL_DDPM_STEPS), ("ddim", 10))


def _user_sequences(pairs: np.ndarray, n_users: int) -> list[list[int]]:
    """Each user's items in the order the split stores them (chronological for our splits)."""
    seqs: list[list[int]] = [[] for _ in range(n_users)]
    for u, i in pairs.tolist():
        seqs[u].append(i)
    return seqs


def svd_item_vectors(train: sp.csr_matrix, dim: int = 64) -> np.ndarray:
    """Item vectors ``V sqrt(S)`` of a truncated SVD of the train matrix (stand-in embeddings)."""
    from scipy.sparse.linalg import svds

    k = max(1, min(dim, min(train.shape) - 1))
    _, s, vt = svds(train.astype(np.float64), k=k, random_state=0)
    return (vt.T * np.sqrt(s)[None, :]).astype(np.float32)


def compare_dreamrec(
    split: InteractionSplit, budget: Budget | None = None, *, seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, float]:
    """The embedding-space variant (DreamRec) on the same split and protocol.

    Item vectors are an SVD of the train matrix; one model is trained per split (its epochs are
    a sixth of the budget's: every epoch already visits each next-item pair) and the guidance
    scale is tuned over ``budget.configs`` values on valid.
    """
    from funnel.generative.dreamrec import DreamRec, DreamRecConfig

    budget = budget or Budget()
    say = progress or (lambda _msg: None)
    train, valid, test = split.matrix("train"), split.matrix("valid"), split.matrix("test")
    seen = (train + valid).tocsr()
    seen.data[:] = 1.0
    sequences = _user_sequences(split.train, split.n_users)
    say("training DreamRec")
    started = time.perf_counter()
    model = DreamRec(DreamRecConfig(
        history_len=20, hidden=(budget.hidden, budget.hidden), epochs=max(1, budget.epochs // 6),
        seed=seed,
    )).fit(sequences, svd_item_vectors(train))
    out: dict[str, float] = {"fit_seconds_dreamrec": time.perf_counter() - started}
    table = model.item_table_.numpy()

    def scores(guidance: float, sampler: str, steps: int) -> np.ndarray:
        gen = torch.Generator().manual_seed(0)
        vecs = model.generate(sequences, sampler=sampler, steps=steps, guidance=guidance,
                              generator=gen)
        return vecs.numpy() @ table.T  # (U, I) inner products

    tuned = []
    for guidance in (2.0, 0.0, 5.0, 1.0)[: budget.configs]:
        say(f"tuning DreamRec guidance {guidance}")
        tuned.append((evaluate_scores(scores(guidance, "ddim", 10), valid, train, K)[0], guidance))
    r_valid, guidance = max(tuned)
    out["valid_recall20_dreamrec"], out["dreamrec_guidance"] = r_valid, guidance
    for name, steps in DREAMREC_TABLE:
        say(f"DreamRec {name} with {steps} steps")
        started = time.perf_counter()
        s = scores(guidance, name, steps)
        elapsed = time.perf_counter() - started
        r, n = evaluate_scores(s, test, seen, K)
        key = f"dreamrec_{name}_{steps}"
        out[f"recall20_{key}"], out[f"ndcg20_{key}"] = r, n
        out[f"ms_per_user_{key}"] = 1000.0 * elapsed / max(1, split.n_users)
    return out
