"""DreamRec (embedding-space generation + nearest items), GenerativeRecall and the build.

Planted structure: 40 items in 4 clusters whose vectors share a direction; users click within
one cluster. A generator that conditions on the history must recommend the history's cluster
(chance level 25%).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from funnel.exceptions import ArtifactError, ConfigError, ModelFitError, NotFittedError
from funnel.generative.dreamrec import DreamRec, DreamRecConfig
from funnel.generative.recall_source import GenerativeRecall
from funnel.recall.base import CandidateSource, RecallRequest

C, P = 4, 10


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, list[list[int]]]:
    rng = np.random.default_rng(0)
    vectors = np.concatenate(
        [np.repeat(np.eye(C), P, axis=0) * 2, rng.normal(size=(C * P, 12)) * 0.5], axis=1
    ).astype(np.float32)
    sequences = [list(u % C * P + rng.integers(0, P, size=8)) for u in range(240)]
    return vectors, sequences


@pytest.fixture(scope="module")
def model(planted) -> DreamRec:
    vectors, sequences = planted
    cfg = DreamRecConfig(epochs=12, hidden=(128,), dim=32, batch_size=128)
    return DreamRec(cfg).fit(sequences, vectors)


def _same_cluster_share(model: DreamRec, **kwargs) -> float:
    hist = [[c * P + 1, c * P + 5, c * P + 7] for c in range(C)] * 3
    ids, scores = model.recommend(hist, k=5, **kwargs)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    assert not any(set(h) & set(row) for h, row in zip(hist, ids.tolist(), strict=True))
    return float(np.mean([(ids[i] // P == hist[i][0] // P).mean() for i in range(len(hist))]))


@pytest.mark.slow
@pytest.mark.parametrize(("sampler", "steps", "guidance"),
                         [("ddim", 10, 2.0), ("ddim", 10, 0.0), ("pfode", 5, 2.0),
                          ("ddpm", 50, 2.0)])
def test_generation_follows_the_history(model, sampler, steps, guidance) -> None:
    assert model.loss_trace_[-1] < 0.6 * model.loss_trace_[0]
    assert _same_cluster_share(model, sampler=sampler, steps=steps, guidance=guidance) > 0.9


@pytest.mark.slow
def test_save_load_round_trip_and_recall_source(model, tmp_path: Path) -> None:
    model.save(tmp_path / "model")
    back = DreamRec.load(tmp_path / "model")
    hist = [[1, 2, 3], [25, 26]]
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert np.array_equal(model.recommend(hist, k=7, generator=gen())[0],
                          back.recommend(hist, k=7, generator=gen())[0])
    item_ids = [f"item{i:02d}" for i in range(C * P)]
    source = GenerativeRecall(back, item_ids)
    assert isinstance(source, CandidateSource)
    cands = source.candidates(RecallRequest(recent_items=["item21", "item25", "nope"], k=8))
    assert len(cands.item_ids) == 8
    assert all(10 * 2 <= int(i[4:]) < 10 * 3 for i in cands.item_ids)  # cluster 2
    assert "item21" not in set(cands.item_ids)
    again = source.candidates(RecallRequest(recent_items=["item21", "item25"], k=8))
    assert cands.item_ids.tolist() == again.item_ids.tolist()  # stateless, deterministic
    assert len(source.candidates(RecallRequest(recent_items=["unknown"], k=8)).item_ids) == 0
    big = source.candidates(RecallRequest(recent_items=["item01"], k=1000))
    assert len(big.item_ids) == C * P - 1 and np.all(np.isfinite(big.scores))


def test_errors_are_precise(planted) -> None:
    vectors, sequences = planted
    with pytest.raises(NotFittedError):
        DreamRec().recommend([[1]])
    with pytest.raises(ValueError, match="sequences hold item index 99; expected 0 <= index < 40"):
        DreamRec(DreamRecConfig(epochs=1)).fit([[1, 99]], vectors)
    with pytest.raises(ModelFitError, match="no training pairs"):
        DreamRec(DreamRecConfig(epochs=1)).fit([[1], [2]], vectors)
    with pytest.raises(ValueError, match="'item_vectors' parameter must be 2-D"):
        DreamRec().fit(sequences, vectors[0])
    with pytest.raises(ConfigError, match="'sampler' parameter must be one of"):
        DreamRecConfig(sampler="rf")
    with pytest.raises(ConfigError, match=r"'dim' \(30\) must be divisible by 'heads' \(4\)"):
        DreamRecConfig(dim=30, heads=4)
    with pytest.raises(ArtifactError, match="not a saved DreamRec directory"):
        DreamRec.load(Path("/nonexistent"))


@pytest.mark.slow
def test_generative_source_plugs_into_the_recall_merger(model) -> None:
    from funnel.recall.merger import Merger

    item_ids = [f"item{i:02d}" for i in range(C * P)]
    merger = Merger([GenerativeRecall(model, item_ids)], quotas={"generative": 6})
    merged = merger.recall(RecallRequest(recent_items=["item31", "item33"], k=10))
    assert len(merged.item_ids) == 6
    assert all(30 <= int(i[4:]) < 40 for i in merged.item_ids)  # the history's cluster
    assert all(set(p) == {"generative"} for p in merged.provenance)
