"""Run a plan of stages on one engine: load inputs, materialize outputs, write Parquet."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow as pa

from funnel.pipeline.engines import Engine
from funnel.pipeline.stages import PipelineConfig, Stage, plan

BASE_TABLES = ("events", "items")


def load_inputs(engine: Engine, source: Mapping[str, pa.Table] | Path) -> None:
    """Register ``events`` and ``items`` from Arrow tables or from a directory holding
    ``events/`` (Parquet, possibly ``dt=``-partitioned) and ``items.parquet`` (or ``items/``)."""
    if isinstance(source, Mapping):
        missing = [t for t in BASE_TABLES if t not in source]
        if missing:
            raise ValueError(f"source must hold tables {BASE_TABLES}; missing {missing}")
        for t in BASE_TABLES:
            engine.register_arrow(t, source[t])
        return
    root = Path(source)
    for t in BASE_TABLES:
        path = root / t if (root / t).is_dir() else root / f"{t}.parquet"
        engine.read_parquet(t, path)


def run_pipeline(
    engine: Engine,
    stages: list[str] | tuple[str, ...],
    config: PipelineConfig | None = None,
    *,
    out: Path | None = None,
    on_stage: Callable[[Stage, int, float], None] | None = None,
) -> dict[str, float]:
    """Materialize ``stages`` (plus dependencies) on ``engine``; rows and seconds per output.

    With ``out`` each output is written to ``out/<table>/`` (``dt=`` partitions where the stage
    has a date column).
    """
    config = config or PipelineConfig()
    summary: dict[str, float] = {}
    for stage in plan(stages):
        t0 = time.perf_counter()
        rows = engine.materialize(stage.output, stage.render(engine.dialect, config))
        if out is not None:
            engine.write_parquet(stage.output, Path(out) / stage.output, stage.partition_by)
        seconds = time.perf_counter() - t0
        summary[f"{stage.output}_rows"] = float(rows)
        summary[f"{stage.output}_s"] = seconds
        if on_stage is not None:
            on_stage(stage, rows, seconds)
    return summary
