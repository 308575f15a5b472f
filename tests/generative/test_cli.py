"""``funnel evaluate-recall`` on a DiffRec-format split with planted structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from funnel.cli import app
from funnel.generative.evaluate import SAMPLER_TABLE
from funnel.generative.splits import InteractionSplit, save_diffrec_split

runner = CliRunner()


def _planted_split(directory: Path) -> None:
    """4 groups x 25 users, each group's 20-item block split 12 train / 2 valid / 6 test."""
    rng = np.random.default_rng(1)
    parts: list[list[tuple[int, int]]] = [[], [], []]
    for u in range(100):
        block = (u % 4) * 20 + rng.permutation(20)
        for k, chunk in enumerate(np.split(block, [12, 14])):
            parts[k].extend((u, int(i)) for i in chunk)
    arrays = [np.array(p, dtype=np.int64) for p in parts]
    save_diffrec_split(InteractionSplit(100, 80, *arrays), directory)


@pytest.mark.slow
def test_evaluate_recall_writes_every_contract_key(tmp_path: Path) -> None:
    _planted_split(tmp_path / "split")
    out = tmp_path / "result.json"
    result = runner.invoke(app, ["evaluate-recall", "--split", str(tmp_path / "split"),
                                 "--json", str(out), "--configs", "1", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    required = {"recall20_ease", "ndcg20_ease"} | {
        f"{m}20_{s}_{n}" for s, n in SAMPLER_TABLE for m in ("recall", "ndcg")
    } | {f"ms_per_user_{s}_{n}" for s, n in SAMPLER_TABLE}
    assert required <= set(data)
    assert {"recall20_ddpm_100", "recall20_ddim_10", "recall20_ddim_5", "recall20_pfode_10",
            "recall20_sde_50", "recall20_rf_1", "recall20_rf_2", "recall20_rf_4",
            "recall20_nice_1"} <= set(data)
    # 6 held-out items, 8 unseen block items among 66 candidates: EASE finds the block
    assert data["recall20_ease"] > 0.95
    assert all(0.0 <= data[k] <= 1.0 for k in data if k.startswith(("recall20", "ndcg20")))
    assert all(data[k] > 0 for k in data if k.startswith("ms_per_user"))


def test_evaluate_recall_names_the_missing_file(tmp_path: Path) -> None:
    # issue 20: the error was wrapped at the terminal width with a space inside the file name
    split = tmp_path / ("a-long-directory-name-" * 8) / "split"
    split.mkdir(parents=True)
    result = runner.invoke(app, ["evaluate-recall", "--split", str(split)])
    assert result.exit_code == 1
    assert result.output == (
        f"error: {split / 'train_list.npy'}: missing; a DiffRec split directory holds "
        "('train_list.npy', 'valid_list.npy', 'test_list.npy')\n"
    )
