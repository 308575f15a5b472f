"""Build one synthetic workspace twice, from the event store (DuckDB) and from Spark's tables,
and compare the artifacts (``benchmarks/pipeline.py``'s ``artifact_identical_spark_vs_duckdb``).

Single-threaded embedding training (Hogwild threads reorder updates), so every index must be
byte-identical; the rankers train with threads, so their test AUC is compared, not their bytes.
"""

from __future__ import annotations

import filecmp
import tempfile
import time
from pathlib import Path
from typing import Any

IDENTICAL = ("catalog", "embeddings", "recall/covisit", "recall/popularity", "recall/vector",
             "recall/cooc", "recall/sr", "recall/sknn", "recall/query_items", "suggest")
TIMINGS = {"embeddings/config.json", "suggest/config.json"}
STAGES = ("catalog", "embeddings", "recall", "rank", "suggest")


def differing_files(a: Path, b: Path) -> list[str]:
    out = []
    for part in IDENTICAL:
        names = {p.relative_to(a) for p in (a / part).rglob("*") if p.is_file()}
        names |= {p.relative_to(b) for p in (b / part).rglob("*") if p.is_file()}
        for name in sorted(names):
            if str(name) in TIMINGS:
                continue
            if not ((a / name).is_file() and (b / name).is_file()
                    and filecmp.cmp(a / name, b / name, shallow=False)):
                out.append(str(name))
    return out


def artifact_identity(events: int = 20_000, seed: int = 3) -> dict[str, Any]:
    """Flat figures: whether the Spark-table build equals the store build, and the AUC gap."""
    from funnel.build import run_build, synthetic_workspace
    from funnel.build_tables import spark_tables

    with tempfile.TemporaryDirectory(prefix="artifact-identity-") as tmp:
        ws = synthetic_workspace(Path(tmp) / "ws", events=events, seed=seed, stages=())
        with ws.config_path.open("a") as f:
            f.write('\n[embed]\nn_threads = 1\n\n[rank]\nmodels = ["lr", "deepfm"]\n')
        t0 = time.perf_counter()
        va, ra = run_build(ws, STAGES)
        t1 = time.perf_counter()
        tables = spark_tables(ws, Path(tmp) / "spark", "local[2]")
        t2 = time.perf_counter()
        vb, rb = run_build(ws, STAGES, tables=tables)
        t3 = time.perf_counter()
        diff = differing_files(ws.artifacts.root / va, ws.artifacts.root / vb)
        gap = max(abs(ra["rank"][f"{m}.auc"] - rb["rank"][f"{m}.auc"]) for m in ("lr", "deepfm"))
        return {
            "artifact_events": events,
            "artifact_identical_spark_vs_duckdb": not diff and gap <= 0.005,
            "artifact_differing_files": len(diff),
            "artifact_rank_auc_gap": gap,
            "artifact_build_s_store": t1 - t0,
            "artifact_spark_tables_s": t2 - t1,
            "artifact_build_s_tables": t3 - t2,
        }
