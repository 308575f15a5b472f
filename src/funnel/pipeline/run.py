"""Run a plan of stages on one engine: load inputs, materialize outputs, write Parquet.

A run written to a directory (:func:`run_to_directory`) leaves a manifest beside its tables
(``_pipeline.json``: engine, stages, parameters, where its events came from), so that
``funnel build --tables DIR`` can check the tables were computed the way the workspace's
configuration asks before an artifact is built from them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs

from funnel.data.store import EventStore
from funnel.exceptions import DataFileError
from funnel.pipeline.engines import Engine
from funnel.pipeline.location import Location, filesystem, is_url, join
from funnel.pipeline.stages import PipelineConfig, Stage, plan

BASE_TABLES = ("events", "items")
EXTRA_TABLES = ("truth",)
"""Tables of an event store a run's input may carry beside events and items (a synthetic
marketplace's true click probabilities, which the build reports against when present)."""
MANIFEST = "_pipeline.json"
MARKER = "_pipeline_tables"
"""A table in a database loaded from a run (``funnel build --tables``) listing the outputs
that readers take as they are instead of computing them from events."""
STORE_EXPORT = "_input"
"""Sub-directory of a run's output holding the events and items it read from an event store,
so the output alone is enough to build from."""


def load_inputs(engine: Engine, source: Mapping[str, pa.Table] | Location) -> None:
    """Register ``events`` and ``items`` from Arrow tables or from a directory holding
    ``events/`` (Parquet, possibly ``dt=``-partitioned) and ``items.parquet`` (or ``items/``)."""
    if isinstance(source, Mapping):
        missing = [t for t in BASE_TABLES if t not in source]
        if missing:
            raise ValueError(f"source must hold tables {BASE_TABLES}; missing {missing}")
        for t in BASE_TABLES:
            engine.register_arrow(t, source[t])
        return
    for t, path in input_paths(source).items():
        engine.read_parquet(t, path)


def input_paths(root: Location, *, extra: bool = False) -> dict[str, Location]:
    """``events`` and ``items`` of an input directory (``items/`` or ``items.parquet``), and
    with ``extra`` those of :data:`EXTRA_TABLES` it holds."""
    fs, path = filesystem(root)

    def kind(name: str) -> pafs.FileType:
        return fs.get_file_info(f"{path}/{name}").type

    paths = {t: join(root, t) if kind(t) == pafs.FileType.Directory
             else join(root, f"{t}.parquet") for t in BASE_TABLES}
    if extra:
        paths.update({t: join(root, f"{t}.parquet") for t in EXTRA_TABLES
                      if kind(f"{t}.parquet") == pafs.FileType.File})
    return paths


def run_pipeline(
    engine: Engine,
    stages: list[str] | tuple[str, ...],
    config: PipelineConfig | None = None,
    *,
    out: Location | None = None,
    on_stage: Callable[[Stage, int, float], None] | None = None,
) -> dict[str, float]:
    """Materialize ``stages`` (plus dependencies) on ``engine``; rows and seconds per output.

    With ``out`` each output is written to ``out/<table>/`` (``dt=`` partitions where the stage
    has a date column).
    """
    config = config or PipelineConfig()
    summary: dict[str, int | float] = {}
    for stage in plan(stages):
        t0 = time.perf_counter()
        rows = engine.materialize(stage.output, stage.render(engine.dialect, config))
        if out is not None:
            engine.write_parquet(stage.output, join(out, stage.output), stage.partition_by)
        seconds = time.perf_counter() - t0
        summary[f"{stage.output}_rows"] = rows
        summary[f"{stage.output}_s"] = round(seconds, 3)
        if on_stage is not None:
            on_stage(stage, rows, seconds)
    return summary


@dataclass(frozen=True)
class Manifest:
    """What a pipeline run to a directory computed, and from what."""

    engine: str
    stages: tuple[str, ...]
    """The stage groups run (dependencies included), e.g. ``("sessions", "covisit")``."""
    outputs: tuple[str, ...]
    """Tables written, one sub-directory each."""
    config: PipelineConfig
    input: str
    """Directory of the events and items read: absolute, or relative to the run's output."""

    def input_dir(self, out: Location) -> Location:
        if is_url(self.input) or Path(self.input).is_absolute():
            return self.input
        return join(out, self.input)


def write_manifest(out: Location, manifest: Manifest) -> None:
    data = asdict(manifest)
    data["stages"], data["outputs"] = list(manifest.stages), list(manifest.outputs)
    fs, path = filesystem(join(out, MANIFEST))
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(data, indent=2).encode())


def read_manifest(out: Location) -> Manifest:
    """The manifest of a run's output directory; :class:`DataFileError` (one line, with the
    fix) when it is missing or not one."""
    where = join(out, MANIFEST)
    fs, path = filesystem(where)
    fix = "write one with 'funnel pipeline run --out DIR'"
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise DataFileError(str(where),
                            f"no pipeline manifest, so DIR is not a pipeline run; {fix}")
    try:
        with fs.open_input_stream(path) as f:
            data = json.loads(f.read().decode())
        return Manifest(engine=str(data["engine"]), stages=tuple(data["stages"]),
                        outputs=tuple(data["outputs"]), config=PipelineConfig(**data["config"]),
                        input=str(data["input"]))
    except (ValueError, KeyError, TypeError) as err:
        raise DataFileError(str(where), f"not a pipeline manifest ({err}); {fix}") from None


def export_store(store: Path, out: Path) -> Path:
    """An event store's events (``dt=`` by day) and items as Parquet under ``out``: the
    engines' common input."""
    if not Path(store).exists():
        raise FileNotFoundError(f"{store}: no event store; run 'funnel ingest' first")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone='UTC'")
        con.execute(f"ATTACH '{Path(store).resolve()}' AS store (READ_ONLY)")
        out.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT *, strftime(ts, '%Y-%m-%d') AS dt FROM store.events) "
                    f"TO '{out / 'events'}' (FORMAT PARQUET, PARTITION_BY (dt), OVERWRITE)")
        con.execute(f"COPY store.items TO '{out / 'items.parquet'}' (FORMAT PARQUET)")
        stored = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'store'"
        ).fetchall()}
        for name in set(EXTRA_TABLES) & stored:
            con.execute(f"COPY store.{name} TO '{out / f'{name}.parquet'}' (FORMAT PARQUET)")
    finally:
        con.close()
    return out


def run_to_directory(
    engine: Engine,
    stages: list[str] | tuple[str, ...],
    out: Location,
    config: PipelineConfig | None = None,
    *,
    input_dir: Location | None = None,
    store: Path | None = None,
    on_stage: Callable[[Stage, int, float], None] | None = None,
) -> dict[str, int | float]:
    """Run ``stages`` on ``engine`` from ``input_dir`` (or an event ``store``, exported to
    ``out/_input``), write each output under ``out`` and the manifest last (a run that
    failed half way leaves no manifest, so nothing builds from it)."""
    if (input_dir is None) == (store is None):
        raise ValueError("give exactly one of input_dir and store")
    config = config or PipelineConfig()
    fs, path = filesystem(out)
    fs.create_dir(path, recursive=True)
    if fs.get_file_info(f"{path}/{MANIFEST}").type == pafs.FileType.File:
        fs.delete_file(f"{path}/{MANIFEST}")
    source: Location
    if store is not None:
        if is_url(out):
            raise ValueError(f"{out}: a run from the event store writes a local directory; "
                             "export the events to the cluster and pass input_dir")
        source, recorded = export_store(store, Path(out) / STORE_EXPORT), STORE_EXPORT
    else:
        assert input_dir is not None
        source = input_dir
        recorded = str(input_dir) if is_url(input_dir) else str(Path(input_dir).resolve())
    load_inputs(engine, source)
    summary = run_pipeline(engine, stages, config, out=out, on_stage=on_stage)
    todo = plan(stages)
    groups = tuple(dict.fromkeys(s.name for s in todo))
    write_manifest(out, Manifest(engine=engine.dialect.name, stages=groups,
                                 outputs=tuple(s.output for s in todo), config=config,
                                 input=recorded))
    return summary


def pipeline_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The pipeline outputs a database holds ready-made (empty for an event store)."""
    if not EventStore(con).has_table(MARKER):
        return set()
    return {str(r[0]) for r in con.execute(f"SELECT name FROM {MARKER}").fetchall()}
