"""Run a benchmark's worker in its own process tree and measure it (shared by the scripts).

Why a subprocess: peak memory must be the measured code's alone. RSS is sampled every 50 ms
over the worker and all its children (torchrun workers, a JVM): ``peak_mb`` is the largest sum
over the tree, ``peak_mb_process`` the largest single process, ``peak_mb_root`` the worker's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil


def run_worker(script: Path, args: list[str]) -> dict[str, Any]:
    """Run ``python script *args``; the JSON object on its last stdout line plus wall time
    (``process_s``) and peak RSS in MB (``peak_mb``, ``peak_mb_process``, ``peak_mb_root``)."""
    cmd = [sys.executable, str(script), *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ps = psutil.Process(proc.pid)
    peak = peak_one = peak_root = 0
    while proc.poll() is None:
        try:
            root = ps.memory_info().rss
            sizes = [root, *(c.memory_info().rss for c in ps.children(recursive=True)
                             if c.is_running())]
            peak, peak_one = max(peak, sum(sizes)), max(peak_one, *sizes)
            peak_root = max(peak_root, root)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed with exit code {proc.returncode}")
    res: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    res["peak_mb"] = peak / 2**20
    res["peak_mb_process"] = peak_one / 2**20
    res["peak_mb_root"] = peak_root / 2**20
    return res
