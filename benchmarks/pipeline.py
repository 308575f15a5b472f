"""Sessionization at scale: DuckDB vs Spark local[2] vs pandas on the same dt-partitioned log.

The synthetic marketplace (``funnel.data.synthetic.generate``, streamed Parquet) is written
once per size to a cache directory and re-partitioned by day (``events/dt=YYYY-MM-DD/``). Each
engine then runs in its OWN subprocess (so peak memory is that engine's alone, measured as the
largest RSS of the worker's process tree, JVM included, sampled every 50 ms):

- duckdb: the shared stage SQL (``funnel.pipeline``), 2 threads, ``memory_limit`` 1.5 GB;
- spark: the same SQL text on ``local[2]`` (JVM start reported apart as ``spark_startup_s``);
- pandas: a hand-written sort + groupby sessionization with the same rules (the usual peer).

Each worker reads the Parquet, sessionizes and writes the sessionization's two outputs as
Parquet: ``sessions`` and ``session_events`` (every action's session and position; pandas
times that write apart as ``pandas_session_events_write_s``). Outputs are then compared row for
row in DuckDB (``spark_identical`` on sessions; ``pandas_identical`` on both tables). Besides
wall time each worker reports its CPU seconds (``cpu_s_*``, all threads): on a machine shared
with other jobs the wall ratio moves with the load, the CPU ratio much less. With
``--all-stages`` the DuckDB worker also times every stage (sessions, corpora, covisit,
query_stats, training set).

The training-rows stage is also timed on its own, twice on the same data in the same run: the
current SQL (``training_rows_s_duckdb``) and the text it replaced, frozen in
``benchmarks/_training_rows_before.py`` (``training_rows_s_before``), each in a fresh DuckDB
worker (2 threads, 1.5 GB) whose peak RSS is ``training_rows_peak_mb_*``. The two outputs are
compared row for row (``training_rows_identical``); the 1-minute load average is recorded
beside each timing (``load_*``).

Unless ``--skip-spark``, a 20k-event marketplace is also built twice, from its event store and
from the tables Spark's pipeline wrote (``funnel build --tables``), and the two artifacts are
compared (``artifact_identical_spark_vs_duckdb``: every index byte-identical with one embedding
thread, ranker AUC within 0.005; ``benchmarks/_artifact_identity.py``).

    python benchmarks/pipeline.py --quick            # 1M events
    python benchmarks/pipeline.py --json out.json    # 10M events
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _workers  # benchmarks/ is on sys.path
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

HERE = Path(__file__).resolve()
GAP_MS = 30 * 60_000
SESSION_COLS = ("session_id", "user_id", "start_ts", "end_ts", "market", "n_clicks", "items",
                "dwell_ms", "queries", "booked_item", "booked")


# ---- data -----------------------------------------------------------------------------------
def prepare(n_events: int, cache: Path) -> Path:
    """Generated log, re-partitioned by day, cached under ``cache/events_<n>``."""
    from funnel.data.synthetic import MarketplaceConfig, generate

    root = cache / f"events_{n_events}"
    if (root / "READY").exists():
        return root
    raw = root / "raw"
    t0 = time.perf_counter()
    generate(MarketplaceConfig(n_events=n_events, seed=7), raw)
    print(f"generated {n_events:,} events in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.execute(
        f"COPY (SELECT *, strftime(ts, '%Y-%m-%d') AS dt "
        f"FROM read_parquet('{raw}/events/*.parquet'))"
        f" TO '{root / 'events'}' (FORMAT PARQUET, PARTITION_BY (dt))"
    )
    (root / "items").mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY (SELECT * FROM read_parquet('{raw}/items.parquet')) "
                f"TO '{root / 'items' / 'part-0.parquet'}' (FORMAT PARQUET)")
    for sub in ("events", "truth"):
        for f in (raw / sub).glob("*.parquet"):
            f.unlink()
    (root / "READY").write_text("ok")
    return root


# ---- workers (run in their own process) -----------------------------------------------------
def work_duckdb(data: Path, out: Path, all_stages: bool) -> dict[str, Any]:
    from funnel.pipeline.engines import DuckDBEngine
    from funnel.pipeline.run import load_inputs, run_pipeline

    t0, c0 = time.perf_counter(), time.process_time()
    engine = DuckDBEngine(memory_limit="1500MB", threads=2)
    engine.con.execute(f"SET temp_directory='{out}.tmp'")
    load_inputs(engine, data)
    run_pipeline(engine, ["sessions"], out=out)
    res: dict[str, Any] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    if all_stages:
        t1 = time.perf_counter()
        stages = run_pipeline(engine, ["corpora", "covisit", "query_stats", "training_set"])
        res["all_stages_s"] = res["wall_s"] + time.perf_counter() - t1
        res["stages"] = stages
    return res


def work_training_rows(data: Path, out: Path, which: str) -> dict[str, Any]:
    """The training-rows stage alone: the current SQL or the frozen one it replaced."""
    from funnel.pipeline.engines import DuckDBEngine
    from funnel.pipeline.run import load_inputs
    from funnel.pipeline.stages import PipelineConfig, training_rows_sql

    if which == "before":
        sys.path.insert(0, str(HERE.parent))
        from _training_rows_before import training_rows_sql as before_sql

        render = before_sql
    else:
        render = training_rows_sql
    engine = DuckDBEngine(memory_limit="1500MB", threads=2)
    engine.con.execute(f"SET temp_directory='{out}.tmp'")
    load_inputs(engine, data)
    sql = render(engine.dialect, PipelineConfig())
    t0, c0 = time.perf_counter(), time.process_time()
    rows = engine.materialize("training_rows", sql)
    res = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "rows": rows}
    engine.write_parquet("training_rows", out, None)  # for the comparison, not timed
    return res


def work_spark(data: Path, out: Path, master: str) -> dict[str, Any]:
    from funnel.pipeline.engines import SparkEngine, spark_session
    from funnel.pipeline.run import load_inputs, run_pipeline

    t0 = time.perf_counter()
    spark = spark_session(master, shuffle_partitions=8, driver_memory="3g")
    spark.range(1).count()
    t1 = time.perf_counter()
    engine = SparkEngine(spark)
    load_inputs(engine, data)
    run_pipeline(engine, ["sessions"], out=out)
    res = {"wall_s": time.perf_counter() - t1, "startup_s": t1 - t0}
    spark.stop()
    return res


def _ts_ms(col: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(pc.cast(col, pa.timestamp("ms", tz="UTC")), pa.int64()).to_numpy()


def work_pandas(data: Path, out: Path) -> dict[str, Any]:
    """Sessionization by hand: sort, diff, cumsum, groupby (same rules as the stage SQL)."""
    import pandas as pd

    t0, c0 = time.perf_counter(), time.process_time()
    cols = ["event_id", "ts", "user_id", "event_type", "item_id", "query", "dwell_ms", "market"]
    ev = ds.dataset(data / "events", format="parquet", partitioning="hive").to_table(
        columns=cols, filter=pc.field("event_type") != "impression")
    items = pq.read_table(data / "items", columns=["item_id", "market"]).to_pandas()
    df = ev.drop(["ts"]).to_pandas()
    df["ts_ms"] = _ts_ms(ev["ts"])
    df = df.merge(items.rename(columns={"market": "item_market"}), on="item_id", how="left")
    df["market"] = df["market"].fillna(df["item_market"])
    df = df.sort_values(["user_id", "ts_ms", "event_id"], kind="stable", ignore_index=True)
    new_user = df["user_id"].ne(df["user_id"].shift())
    gap = df["ts_ms"].diff().gt(GAP_MS)
    df["session_no"] = (new_user | gap).astype(np.int64).groupby(df["user_id"]).cumsum()
    df["session_id"] = df["user_id"] + "#" + df["session_no"].astype(str)
    df["seq"] = df.groupby("session_id", sort=False).cumcount() + 1
    g = df.groupby("session_id", sort=False)
    s = pd.DataFrame({"user_id": g["user_id"].first(), "start_ms": g["ts_ms"].min(),
                      "end_ms": g["ts_ms"].max()})
    clicks = df[df["event_type"] == "click"].groupby("session_id", sort=False)
    s["n_clicks"] = clicks.size().reindex(s.index, fill_value=0).astype(np.int32)
    s["items"] = clicks["item_id"].agg(list).reindex(s.index)
    s["dwell_ms"] = clicks["dwell_ms"].agg(list).reindex(s.index)
    s["queries"] = df[df["event_type"] == "search"].groupby(
        "session_id", sort=False)["query"].agg(list).reindex(s.index)
    bk = df[df["event_type"] == "booking"].drop_duplicates("session_id", keep="last")
    bk = bk.set_index("session_id")
    s["booked_item"] = bk["item_id"].reindex(s.index)
    s["booked"] = s.index.isin(bk.index)
    mk = df.dropna(subset=["market"]).groupby(["session_id", "market"]).size().rename("n")
    mk = mk.reset_index().sort_values(["session_id", "n", "market"], ascending=[True, False, True])
    mode = mk.drop_duplicates("session_id").set_index("session_id")["market"]
    s["market"] = bk["market"].reindex(s.index).fillna(mode.reindex(s.index))
    empty = [[] for _ in range(len(s))]
    for c in ("items", "dwell_ms", "queries"):
        s[c] = s[c].where(s[c].notna(), pd.Series(empty, index=s.index))
    table = pa.table({
        "session_id": pa.array(s.index.to_numpy(dtype=object)),
        "user_id": pa.array(s["user_id"].to_numpy(dtype=object)),
        "start_ts": pa.array(s["start_ms"].to_numpy(), pa.timestamp("ms", tz="UTC")),
        "end_ts": pa.array(s["end_ms"].to_numpy(), pa.timestamp("ms", tz="UTC")),
        "market": pa.array(s["market"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        "n_clicks": pa.array(s["n_clicks"].to_numpy(), pa.int32()),
        "items": pa.array(s["items"].tolist(), pa.list_(pa.string()), from_pandas=True),
        "dwell_ms": pa.array(s["dwell_ms"].tolist(), pa.list_(pa.int64()), from_pandas=True),
        "queries": pa.array(s["queries"].tolist(), pa.list_(pa.string()), from_pandas=True),
        "booked_item": pa.array(s["booked_item"].to_numpy(dtype=object), pa.string(),
                                from_pandas=True),
        "booked": pa.array(s["booked"].to_numpy(), pa.bool_()),
    })
    (out / "sessions").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "sessions" / "part-0.parquet")
    # the pipeline's sessionization also writes session_events (every action's session and
    # position); the same output here, timed apart so it can be subtracted
    t1 = time.perf_counter()
    (out / "session_events").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "event_id": pa.array(df["event_id"].to_numpy(dtype=object), pa.string()),
        "session_id": pa.array(df["session_id"].to_numpy(dtype=object), pa.string()),
        "seq": pa.array(df["seq"].to_numpy(), pa.int32()),
    }), out / "session_events" / "part-0.parquet")
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "session_events_s": time.perf_counter() - t1}


# ---- parent ---------------------------------------------------------------------------------
def run_worker(args: list[str]) -> dict[str, Any]:
    """Run ``this file --worker ...``; its JSON result plus wall time and peak tree RSS (MB)."""
    return _workers.run_worker(HERE, args)


def same_rows(a: Path, b: Path, cols: tuple[str, ...] = SESSION_COLS) -> bool:
    """Both outputs hold the same multiset of rows (timestamps compared in UTC ms)."""
    con = duckdb.connect()
    sel = ", ".join(f"epoch_ms({c}) AS {c}" if c.endswith("_ts") else c for c in cols)

    def src(p: Path) -> str:
        return f"(SELECT {sel} FROM read_parquet('{p}/**/*.parquet', hive_partitioning = false))"

    n_a = con.execute(f"SELECT count(*) FROM {src(a)}").fetchall()[0][0]
    n_b = con.execute(f"SELECT count(*) FROM {src(b)}").fetchall()[0][0]
    diff = con.execute(
        f"SELECT count(*) FROM (({src(a)} EXCEPT ALL {src(b)}) UNION ALL "
        f"({src(b)} EXCEPT ALL {src(a)}))"
    ).fetchall()[0][0]
    return n_a == n_b and diff == 0


def same_table(a: Path, b: Path) -> bool:
    """Both Parquet outputs hold the same multiset of rows (every column, as stored)."""
    con = duckdb.connect()
    src_a, src_b = (f"(SELECT * FROM read_parquet('{p}/**/*.parquet'))" for p in (a, b))
    n_a, n_b = (con.execute(f"SELECT count(*) FROM {s}").fetchall()[0][0] for s in (src_a, src_b))
    diff = con.execute(
        f"SELECT count(*) FROM (({src_a} EXCEPT ALL {src_b}) UNION ALL "
        f"({src_b} EXCEPT ALL {src_a}))"
    ).fetchall()[0][0]
    return n_a == n_b and diff == 0


def training_rows(data: Path, cache: Path, n: int) -> dict[str, Any]:
    """Frozen then current training-rows SQL on the same data, each in its own worker."""
    res: dict[str, Any] = {}
    outs = {}
    for which, key in (("before", "before"), ("new", "duckdb")):
        outs[which] = cache / f"out_{n}_training_rows_{which}"
        load = os.getloadavg()[0]
        w = run_worker(["--worker", "training_rows", "--data", str(data),
                        "--out", str(outs[which]), "--sql", which])
        res.update({f"training_rows_s_{key}": w["wall_s"], f"training_rows_cpu_s_{key}": w["cpu_s"],
                    f"training_rows_peak_mb_{key}": w["peak_mb"],
                    f"training_rows_load_{key}": (load + os.getloadavg()[0]) / 2,
                    f"training_rows_n_{key}": w["rows"]})
    res["training_rows_speedup"] = res["training_rows_s_before"] / res["training_rows_s_duckdb"]
    res["training_rows_identical"] = same_table(outs["before"], outs["new"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M events instead of 10M")
    ap.add_argument("--events", type=int, default=None, help="override the number of events")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "funnel_pipeline")
    ap.add_argument("--spark-master", default="local[2]")
    ap.add_argument("--skip-spark", action="store_true")
    ap.add_argument("--all-stages", action="store_true", help="also time every DuckDB stage")
    ap.add_argument("--skip-training-rows", action="store_true",
                    help="do not time the training-rows SQL against its frozen predecessor")
    ap.add_argument("--worker", choices=["duckdb", "spark", "pandas", "training_rows"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--sql", choices=["new", "before"], default="new", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        if a.worker == "duckdb":
            res = work_duckdb(a.data, a.out, a.all_stages)
        elif a.worker == "spark":
            res = work_spark(a.data, a.out, a.spark_master)
        elif a.worker == "training_rows":
            res = work_training_rows(a.data, a.out, a.sql)
        else:
            res = work_pandas(a.data, a.out)
        print(json.dumps(res))
        return
    n = a.events or (1_000_000 if a.quick else 10_000_000)
    data = prepare(n, a.cache)
    n_actions = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{data}/events/**/*.parquet') "
        "WHERE event_type <> 'impression'").fetchall()[0][0]
    outs = {e: a.cache / f"out_{n}_{e}" for e in ("duckdb", "spark", "pandas")}
    result: dict[str, Any] = {"n_events": n, "n_actions": int(n_actions), "nproc": os.cpu_count(),
                              "loadavg_start": os.getloadavg()[0]}
    extra = ["--all-stages"] if a.all_stages else []
    d = run_worker(["--worker", "duckdb", "--data", str(data), "--out", str(outs["duckdb"]),
                    *extra])
    p = run_worker(["--worker", "pandas", "--data", str(data), "--out", str(outs["pandas"])])
    result.update({
        "wall_s_duckdb": d["wall_s"], "peak_mb_duckdb": d["peak_mb"],
        "wall_s_pandas": p["wall_s"], "peak_mb_pandas": p["peak_mb"],
        "speedup_duckdb_vs_pandas": p["wall_s"] / d["wall_s"],
        "cpu_s_duckdb": d["cpu_s"], "cpu_s_pandas": p["cpu_s"],
        "pandas_session_events_write_s": p["session_events_s"],
        "pandas_identical": (
            same_rows(outs["duckdb"] / "sessions", outs["pandas"] / "sessions")
            and same_rows(outs["duckdb"] / "session_events", outs["pandas"] / "session_events",
                          ("event_id", "session_id", "seq"))),
    })
    if "all_stages_s" in d:
        result["wall_s_duckdb_all_stages"] = d["all_stages_s"]
        result.update({f"duckdb_{k}": v for k, v in d["stages"].items()})
    if not a.skip_spark:
        s = run_worker(["--worker", "spark", "--data", str(data), "--out", str(outs["spark"]),
                        "--spark-master", a.spark_master])
        result.update({
            "wall_s_spark": s["wall_s"], "spark_startup_s": s["startup_s"],
            "peak_mb_spark": s["peak_mb"], "ratio_spark_vs_duckdb": s["wall_s"] / d["wall_s"],
            "spark_identical": same_rows(outs["duckdb"] / "sessions", outs["spark"] / "sessions"),
        })
        from _artifact_identity import artifact_identity

        result.update(artifact_identity())  # a 20k-event build from the store vs Spark's tables
    else:
        result.update({"wall_s_spark": None, "spark_identical": None,
                       "artifact_identical_spark_vs_duckdb": None})
    if not a.skip_training_rows:
        result.update(training_rows(data, a.cache, n))
    result["loadavg_end"] = os.getloadavg()[0]
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v:,.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
