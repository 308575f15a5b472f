"""Build one synthetic workspace twice, from the event store (DuckDB) and from Spark's tables,
and compare the artifacts (``benchmarks/pipeline.py``'s ``artifact_identical_spark_vs_duckdb``).

Single-threaded embedding training (Hogwild threads reorder updates), so every index must be
byte-identical; the rankers train with threads, so their test AUC is compared, not their bytes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

IDENTICAL = ("catalog", "embeddings", "recall/covisit", "recall/popularity", "recall/vector",
             "recall/cooc", "recall/sr", "recall/sknn", "recall/query_items", "suggest")
TIMINGS = {"embeddings/config.json", "suggest/config.json"}
STAGES = ("catalog", "embeddings", "recall", "rank", "suggest")


def artifact_identity(events: int = 20_000, seed: int = 3) -> dict[str, Any]:
    """Flat figures: whether the Spark-table build equals the store build, and the AUC gap."""
    from funnel.artifacts import differing_files
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
        diff = differing_files(ws.artifacts.root / va, ws.artifacts.root / vb, IDENTICAL,
                               TIMINGS)
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
