"""torchrun --nproc-per-node 2 (gloo, loopback) trains a ranker like one process does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from funnel.distributed.train_rank import load_npz, save_npz
from funnel.rank import Ranker, get_ranker
from funnel.rank.metrics import auc
from rank._data import SPECS, interaction_data  # tests/ is on sys.path (rootdir packages)

PARAMS = {"epochs": 3, "batch_size": 256, "learning_rate": 0.01, "hidden_units": [16],
          "patience": 5}


def free_port() -> int:
    """A loopback port nobody listens on (torchrun's --master-port 0 does not rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_npz_round_trip_is_exact(tmp_path: Path):
    data = interaction_data(50, seed=3)[0]
    save_npz(tmp_path / "d.npz", data)
    back = load_npz(tmp_path / "d.npz")
    assert np.array_equal(back.label, data.label)
    for k, v in data.columns.items():
        assert back.columns[k].tolist() == v.tolist()


def test_fit_ddp_without_a_process_group_says_how_to_start_one():
    from funnel.distributed.ddp_rank import fit_ddp, init_from_env

    with pytest.raises(RuntimeError, match="initialized process group"):
        fit_ddp(get_ranker("lr")(SPECS), interaction_data(10)[0])
    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        with pytest.raises(RuntimeError, match="RANK is not set; launch with torchrun"):
            init_from_env()
    finally:
        os.environ.update(env)


def test_train_rank_refuses_a_non_torch_ranker_before_starting(tmp_path: Path, capsys):
    # it used to join the process group and then fail inside fit_ddp (no network_ to wrap)
    from funnel.distributed.train_rank import main

    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["--ranker", "gbdt", "--specs", str(tmp_path / "specs.json"),
                  "--train", str(tmp_path / "train.npz"), "--out", str(tmp_path / "out")])
    finally:
        os.environ.update(env)
    assert exit_info.value.code == 2
    assert "--ranker gbdt: data-parallel training is for the torch rankers only" in (
        capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deepfm", "fm"])
def test_two_process_ddp_matches_single_process(tmp_path: Path, name: str):
    torch.set_num_threads(1)
    train, _ = interaction_data(4000, seed=1)
    valid, _ = interaction_data(1500, seed=2)
    save_npz(tmp_path / "train.npz", train)
    save_npz(tmp_path / "valid.npz", valid)
    (tmp_path / "specs.json").write_text(json.dumps(SPECS))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    cmd = [torchrun or sys.executable, *([] if torchrun else ["-m", "torch.distributed.run"]),
           "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "funnel.distributed.train_rank", "--ranker", name,
           "--specs", str(tmp_path / "specs.json"), "--params", json.dumps(PARAMS),
           "--train", str(tmp_path / "train.npz"), "--valid", str(tmp_path / "valid.npz"),
           "--out", str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = Ranker.load(tmp_path / "ddp")
    single = get_ranker(name)(SPECS, **PARAMS).fit(train, valid)
    p_ddp = ddp.predict_proba(valid.columns)
    p_one = single.predict_proba(valid.columns)
    auc_ddp, auc_one = auc(valid.label, p_ddp), auc(valid.label, p_one)
    assert auc_one > 0.62, (auc_one, auc_ddp)
    assert abs(auc_ddp - auc_one) < 0.01, (auc_one, auc_ddp)
    assert np.max(np.abs(p_ddp - p_one)) < 0.02
    meta = json.loads((tmp_path / "ddp" / "ddp.json").read_text())
    assert meta["world_size"] == 2 and len(meta["history"]) == len(single.history_)
