"""``[rank] ddp_processes = 2``: the build streams its training rows to Parquet shards, trains
its torch ranker by torchrun from them and serves a model as good as the one-process build's."""

from __future__ import annotations

from pathlib import Path

import pytest

from funnel.build import synthetic_workspace
from funnel.exceptions import ConfigError
from funnel.rank import build as rank_build
from funnel.rank.build import RankConfig, build_rank
from funnel.rank.split import Split


def _never(*args: object, **kwargs: object) -> None:
    raise AssertionError("a streamed build held its training rows in memory")


def test_ddp_processes_must_be_a_non_negative_int():
    with pytest.raises(ConfigError, match=r"\[rank\] ddp_processes: expected 0 \(off\) or a "):
        RankConfig(ddp_processes=-1)


@pytest.mark.slow
def test_a_ddp_build_serves_a_model_as_good_as_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
):
    ws = synthetic_workspace(tmp_path / "ws", events=12_000, stages=())
    aucs = {}
    for processes in (0, 2):
        if processes:  # streamed: neither the whole set nor the training slice in this process
            monkeypatch.setattr(rank_build, "build_training_set", _never)
            monkeypatch.setattr(Split, "train", _never)
        config = RankConfig(models=("deepfm",), serve_model="deepfm", epochs=4,
                            importance_repeats=0, train_cvr=False, oof_folds=0,
                            ddp_processes=processes)
        with ws.artifacts.begin() as build:
            metrics = build_rank(ws, build, config)
            assert not list(build.path.glob("ddp-*"))  # the shards and the raw model are gone
            assert not list(build.path.glob("rows-*"))  # nor the streamed rows
        aucs[processes] = metrics["deepfm.auc"]  # the served model on the most recent 20%
    assert aucs[0] > 0.7, aucs
    assert abs(aucs[2] - aucs[0]) < 0.02, aucs
