"""The cluster recipe of docs/scaling.md, run as written on Spark ``local[2]`` and 2 torchrun
processes: generate -> pipeline on Spark -> build from its tables (rankers data-parallel) ->
serve one search.

Each step is the documented command in its own process, so what a cluster runs is what CI
runs; only the master URL, the paths and the sizes differ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from funnel.pipeline.run import read_manifest
from serve.test_edge import edge_server, needs_haproxy

pytestmark = [pytest.mark.slow, pytest.mark.spark, needs_haproxy]


def funnel(*args: str, timeout: float = 900) -> str:
    """Run ``funnel ARGS`` as the documented command does; the output, or a failure showing it."""
    script = Path(sys.executable).parent / "funnel"  # the installed command, as documented
    command = [str(script)] if script.exists() else [sys.executable, "-m", "funnel.cli"]
    proc = subprocess.run([*command, *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, f"funnel {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_cluster_recipe_runs_end_to_end(tmp_path: Path):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("java not found on PATH; scripts/setup-system.sh installs it")
    ws, tables = tmp_path / "shop", tmp_path / "tables"
    funnel("generate", "-w", str(ws), "--events", "12000", "--seed", "5", "--items", "200")
    funnel("pipeline", "run", "-w", str(ws), "--engine", "spark", "--spark-master", "local[2]",
           "--stages", "sessions,covisit,searches,training_set", "--out", str(tables))
    manifest = read_manifest(tables)
    assert manifest.engine == "spark"
    assert any(p.name.startswith("dt=") for p in (tables / "training_rows").iterdir())
    built = json.loads(funnel(
        "build", "-w", str(ws), "--tables", str(tables), "--set", "rank.ddp_processes=2",
        "--set", 'rank.models=["deepfm"]', "--json"))
    assert built["rank.deepfm.auc"] > 0.6  # trained by 2 torchrun processes from Parquet shards
    assert built["recall.covisit_items"] > 50
    assert built["rank.deepfm.ddp_world_size"] == 2
    with edge_server(ws, "memory://", workers=1) as edge:  # funnel serve, behind HAProxy
        r = httpx.post(edge.base + "/search", json={"query": "", "user_id": "u1", "k": 10},
                       timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 10 and body["version"] == built["version"]
