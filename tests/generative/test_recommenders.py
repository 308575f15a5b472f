"""Baselines and the interaction-space generative recommenders on planted block structure.

Users fall in 4 groups, each group likes its own block of 20 items; each user shows 12 of their
block in train and holds out the other 8. Recall@8 of a random ranking is ~8/88 = 0.09; a model
that learned the blocks gets close to 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from funnel.exceptions import ConfigError, NotFittedError
from funnel.generative.baselines import EASE, ItemKNN, MultVAE
from funnel.generative.diffrec import DiffRec, DiffRecConfig
from funnel.generative.metrics import evaluate_scores

GROUPS, BLOCK, USERS_PER_GROUP, SHOWN = 4, 20, 30, 12


@pytest.fixture(scope="module")
def blocks() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(0)
    n_items = GROUPS * BLOCK
    train = np.zeros((GROUPS * USERS_PER_GROUP, n_items), dtype=np.float32)
    test = np.zeros_like(train)
    for u in range(train.shape[0]):
        block = (u % GROUPS) * BLOCK + rng.permutation(BLOCK)
        train[u, block[:SHOWN]] = 1.0
        test[u, block[SHOWN:]] = 1.0
    return sp.csr_matrix(train), sp.csr_matrix(test)


def _recall(model, blocks, **score_kwargs) -> float:
    train, test = blocks
    recall, _ = evaluate_scores(model.score(train, **score_kwargs), test, train, k=BLOCK - SHOWN)
    return recall


@pytest.mark.parametrize(
    "model",
    [EASE(l2=10.0), ItemKNN(neighbors=30),
     pytest.param(MultVAE(hidden=64, latent=16, epochs=100, batch_size=32),
                  marks=pytest.mark.slow)],
    ids=["ease", "itemknn", "multvae"],
)
def test_baselines_find_the_blocks(model, blocks) -> None:
    torch.manual_seed(0)
    assert _recall(model.fit(blocks[0]), blocks) > 0.9


SMALL = DiffRecConfig(hidden=(64,), epochs=150, batch_size=64, lr=3e-3, dropout=0.2)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "sampler", "steps"),
    [
        (SMALL, "ddim", 10),
        (SMALL, "ddpm", 50),
        (SMALL, "pfode", 5),
        (SMALL, "sde", 20),
        (DiffRecConfig(**{**SMALL.__dict__, "objective": "flow", "noise_scale": 0.1,
                          "t_start": 0.5}), "rf", 2),
        (DiffRecConfig(**{**SMALL.__dict__, "objective": "nice", "nice_cond_dim": 32}),
         "nice", 1),
    ],
    ids=["ddim", "ddpm", "pfode", "sde", "rf", "nice"],
)
def test_generative_recommenders_find_the_blocks(config, sampler, steps, blocks) -> None:
    model = DiffRec(config).fit(blocks[0])
    assert model.loss_trace_[-1] < model.loss_trace_[0]
    assert _recall(model, blocks, sampler=sampler, steps=steps) > 0.8


@pytest.fixture(scope="module")
def fitted(blocks) -> DiffRec:
    return DiffRec(DiffRecConfig(hidden=(32,), epochs=20, batch_size=64)).fit(blocks[0])


def test_save_load_gives_identical_scores(fitted: DiffRec, blocks, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "weights.safetensors"]
    back = DiffRec.load(tmp_path)
    assert back.config == fitted.config
    for sampler in ("ddim", "sde"):
        a = fitted.score(blocks[0], sampler=sampler, steps=5,
                         generator=torch.Generator().manual_seed(3))
        b = back.score(blocks[0], sampler=sampler, steps=5,
                       generator=torch.Generator().manual_seed(3))
        assert np.array_equal(a, b)


def test_fit_is_reproducible_under_a_seed(blocks) -> None:
    cfg = DiffRecConfig(hidden=(16,), epochs=3, batch_size=64)
    a = DiffRec(cfg).fit(blocks[0]).score(blocks[0], sampler="ddim", steps=3)
    b = DiffRec(cfg).fit(blocks[0]).score(blocks[0], sampler="ddim", steps=3)
    assert np.array_equal(a, b)


def test_batched_scores_equal_one_batch(fitted: DiffRec, blocks) -> None:
    cfg_no_noise = fitted.config  # ddim with start noise: same generator stream either way
    assert cfg_no_noise.start_noise
    whole = fitted.score(blocks[0], sampler="pfode", steps=4,
                         generator=torch.Generator().manual_seed(1))
    parts = fitted.score(blocks[0], sampler="pfode", steps=4, batch_size=7,
                         generator=torch.Generator().manual_seed(1))
    assert np.allclose(whole, parts, atol=1e-5)


def test_errors_are_precise(fitted: DiffRec, blocks, tmp_path: Path) -> None:
    with pytest.raises(NotFittedError, match="This DiffRec instance is not fitted yet"):
        DiffRec().score(blocks[0])
    with pytest.raises(ValueError, match=r"'sampler' parameter must be one of \('ddpm', 'ddim'"):
        fitted.score(blocks[0], sampler="rf")
    with pytest.raises(ValueError, match="must have 80 item columns"):
        fitted.score(sp.csr_matrix(np.zeros((2, 5), dtype=np.float32)))
    with pytest.raises(TypeError, match="scipy sparse matrix"):
        fitted.score(np.zeros((2, 80)))
    with pytest.raises(ConfigError, match="'objective' parameter must be one of"):
        DiffRecConfig(objective="gan")
    with pytest.raises(ConfigError, match="'t_start' parameter must be in"):
        DiffRecConfig(t_start=0.0)
    with pytest.raises(ValueError, match="The 'l2' parameter must be a float > 0. Got -1.0"):
        EASE(l2=-1.0).fit(blocks[0])
    with pytest.raises(NotFittedError):
        ItemKNN().score(blocks[0])
    (tmp_path / "config.json").write_text('{"config": {"objective": "diffusion", "typo": 1}, '
                                          '"n_items": 80}')
    with pytest.raises(ConfigError, match="unknown key"):
        DiffRec.load(tmp_path)
