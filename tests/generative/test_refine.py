"""RP3beta against a hand-computed example, and the prior-based generative models (issue 22).

The planted data: 4 groups of 30 users, each group likes its own block of 20 items; each user
shows 4 of their block in train and holds out the other 16. The prior is an item-kNN with one
neighbour per item, so it can reach at most 4 of the 16 held-out items (Recall@16 = 0.36 here);
a model that learnt the blocks from the prior's scores and the history gets well above it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from funnel.exceptions import ConfigError, NotFittedError
from funnel.generative.baselines import EASE, ItemKNN, RP3beta, linear_weights
from funnel.generative.diffrec import DiffRec, DiffRecConfig
from funnel.generative.metrics import evaluate_scores
from funnel.generative.refine import (
    PriorRefineConfig,
    PriorRefiner,
    RefineNet,
    blend,
    normalize_scores,
)

GROUPS, BLOCK, USERS_PER_GROUP, SHOWN = 4, 20, 30, 4
K = BLOCK - SHOWN
MARGIN = 0.15  # measured: the prior 0.36, the models 0.56-0.71 (seed 0)


def test_rp3beta_matches_a_hand_computed_example() -> None:
    # users {0, 1} and {1, 2}: Pui rows [.5 .5 0], [0 .5 .5]; Piu rows [1 0], [.5 .5], [0 1];
    # Piu @ Pui = [[.5 .5 0], [.25 .5 .25], [0 .5 .5]]; popularity [1 2 1] ** -0.5 on columns;
    # zero diagonal.
    X = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float32))
    model = RP3beta(alpha=1.0, beta=0.5, neighbors=10).fit(X)
    r = 0.5 / math.sqrt(2.0)
    expected = np.array([[0, r, 0], [0.25, 0, 0.25], [0, r, 0]])
    assert np.allclose(model.similarity_, expected, atol=1e-6)
    assert np.allclose(model.score(X), [[0.25, r, 0.25], [0.25, r, 0.25]], atol=1e-6)
    # alpha = 2 squares every transition probability: Piu^2 @ Pui^2 row 1 = .25*[.25 .25 0] +
    # .25*[0 .25 .25]; beta = 0 leaves popularity alone
    sq = RP3beta(alpha=2.0, beta=0.0).fit(X).similarity_
    assert np.allclose(sq[1], [0.0625, 0.0, 0.0625], atol=1e-6)
    assert np.allclose(sq[0], [0, 0.25, 0], atol=1e-6)


def test_rp3beta_keeps_top_k_per_row_and_validates() -> None:
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((50, 12)) < 0.3).astype(np.float32))
    sim = RP3beta(neighbors=3).fit(X).similarity_
    assert ((sim > 0).sum(axis=1) <= 3).all()
    assert np.all(np.diag(sim) == 0)
    with pytest.raises(ValueError, match="The 'alpha' parameter must be a float > 0. Got 0"):
        RP3beta(alpha=0).fit(X)
    with pytest.raises(NotFittedError):
        RP3beta().score(X)
    with pytest.raises(TypeError, match="fitted EASE, ItemKNN or RP3beta"):
        linear_weights(object())


@pytest.fixture(scope="module")
def planted() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(0)
    train = np.zeros((GROUPS * USERS_PER_GROUP, GROUPS * BLOCK), dtype=np.float32)
    test = np.zeros_like(train)
    for u in range(train.shape[0]):
        block = (u % GROUPS) * BLOCK + rng.permutation(BLOCK)
        train[u, block[:SHOWN]] = 1.0
        test[u, block[SHOWN:]] = 1.0
    return sp.csr_matrix(train), sp.csr_matrix(test)


def _prior() -> ItemKNN:
    return ItemKNN(neighbors=1, shrink=0.0)


def _recall(scores: np.ndarray, planted) -> float:
    train, test = planted
    return evaluate_scores(scores, test, train, K)[0]


@pytest.fixture(scope="module")
def prior_recall(planted) -> float:
    recall = _recall(_prior().fit(planted[0]).score(planted[0]), planted)
    assert 0.2 < recall < 0.5  # weak on purpose, but not useless
    return recall


SMALL = {"hidden": (64,), "epochs": 100, "batch_size": 32, "lr": 3e-3, "dropout": 0.0,
         "mask_rate": 0.5}


@pytest.mark.parametrize(
    ("config", "sampler", "steps"),
    [(PriorRefineConfig(**SMALL), "rf", 1),
     (PriorRefineConfig(**SMALL), "rf", 2),
     (PriorRefineConfig(**SMALL, start="both"), "rf", 1),
     (PriorRefineConfig(**SMALL, objective="diffusion"), "ddim", 10),
     (PriorRefineConfig(**SMALL, objective="diffusion", start="history"), "ddim", 2)],
    ids=["flowcf-1", "flowcf-2", "flowcf-both-1", "priorddim-10", "priorddim-history-2"],
)
def test_refiners_beat_their_prior_on_planted_blocks(
    config, sampler, steps, planted, prior_recall
) -> None:
    model = PriorRefiner(_prior(), config).fit(planted[0])
    assert np.allclose(model.prior_scores(planted[0]), _prior().fit(planted[0]).score(planted[0]))
    recall = _recall(model.score(planted[0], sampler=sampler, steps=steps), planted)
    assert recall > prior_recall + MARGIN, (recall, prior_recall)


def test_prior_start_and_blend_beat_the_prior_on_planted_blocks(planted, prior_recall) -> None:
    train = planted[0]
    prior = _prior().fit(train).score(train)
    model = DiffRec(DiffRecConfig(hidden=(64,), epochs=100, batch_size=32, lr=3e-3,
                                  dropout=0.2)).fit(train)
    start = normalize_scores(torch.from_numpy(prior)).numpy()  # on the history's 0/1 scale
    started = _recall(model.score(train, sampler="ddim", steps=10, prior=start), planted)
    assert started > prior_recall + MARGIN
    plain = model.score(train, sampler="ddim", steps=10)
    blended = max(_recall(blend(prior, plain, w), planted) for w in (0.25, 0.5))
    assert blended > prior_recall + MARGIN


def test_untrained_refiner_returns_the_prior() -> None:
    # the zero-initialised output layer makes the residual net start as the identity on the prior
    torch.manual_seed(0)
    net = RefineNet(7, (5,), 4)
    x, cond = torch.rand(3, 7), torch.rand(3, 7)
    assert torch.equal(net(x, torch.rand(3), cond=cond), cond)


def test_refiner_errors_are_precise(planted) -> None:
    train = planted[0]
    with pytest.raises(NotFittedError, match="This PriorRefiner instance is not fitted yet"):
        PriorRefiner().score(train)
    with pytest.raises(ConfigError, match="'start' parameter must be one of"):
        PriorRefineConfig(start="noise")
    with pytest.raises(ConfigError, match="'mask_rate' parameter must be in"):
        PriorRefineConfig(mask_rate=1.0)
    model = PriorRefiner(EASE(l2=10.0), PriorRefineConfig(hidden=(8,), epochs=1)).fit(train)
    with pytest.raises(ValueError, match=r"'sampler' parameter must be one of \('rf',\)"):
        model.score(train, sampler="ddim")
    with pytest.raises(ValueError, match="'future' parameter must have 120 rows"):
        PriorRefiner(EASE(), PriorRefineConfig(epochs=1)).fit(train, future=train[:5])
    with pytest.raises(ValueError, match="'weight' parameter must be in"):
        blend(np.zeros((2, 3)), np.zeros((2, 3)), 1.5)
    diffrec = DiffRec(DiffRecConfig(hidden=(8,), epochs=1)).fit(train)
    with pytest.raises(ValueError, match="'prior' parameter must have shape"):
        diffrec.score(train, prior=np.zeros((2, 2)))


def test_future_target_trains_and_refiner_is_reproducible(planted) -> None:
    train, test = planted
    cfg = PriorRefineConfig(hidden=(16,), epochs=3, batch_size=32)
    a = PriorRefiner(EASE(l2=10.0), cfg).fit(train, future=test).score(train, steps=2)
    b = PriorRefiner(EASE(l2=10.0), cfg).fit(train, future=test).score(train, steps=2)
    assert np.array_equal(a, b)
    assert a.shape == train.shape


def test_compare_writes_the_benchmark_contract_keys_issue_22(planted) -> None:
    from funnel.generative.evaluate import (
        BASELINES,
        PRIOR_TABLE,
        SAMPLER_TABLE,
        Budget,
        best_vs_baseline,
        compare,
    )
    from funnel.generative.splits import InteractionSplit

    train, test = planted
    rows, cols = test.nonzero()
    pairs = np.stack([rows, cols], axis=1).astype(np.int64)
    valid, held = pairs[::2], pairs[1::2]
    split = InteractionSplit(train.shape[0], train.shape[1],
                             np.stack(train.nonzero(), axis=1).astype(np.int64), valid, held)
    out = compare(split, Budget(configs=1, epochs=1, hidden=8))
    for name in BASELINES:
        assert 0.0 <= out[f"recall20_{name}"] <= 1.0
    for method, steps in SAMPLER_TABLE + PRIOR_TABLE:
        assert 0.0 <= out[f"recall20_{method}_{steps}"] <= 1.0
        assert out[f"ms_per_user_{method}_{steps}"] > 0.0
    key, ratio = best_vs_baseline(out)
    assert int(key.rsplit("_", 1)[1]) <= 10
    bar = max(out[f"recall20_{b}"] for b in BASELINES)
    assert out["best_generative_vs_best_baseline"] == pytest.approx(out[f"recall20_{key}"] / bar)
    assert ratio == out["best_generative_vs_best_baseline"]
