"""Real-format loaders: time to read public log formats, ours vs pandas and DuckDB, same files.

For each file, in the same process:

- ours: ``funnel.data.loaders.get_loader(NAME)(path)``: parse, check every field, reject bad
  lines with row and reason, map onto the contract, content-hash event ids;
- pandas: ``pandas.read_csv`` with the right separator, names and dtypes (parse only: no checks,
  no mapping, no ids; the usual way recsys code reads these files);
- duckdb: ``read_csv`` with explicit columns into Arrow (parse only).

``ratio_pandas`` = ours / pandas wall time (below 1 means we are faster, even though we do
more). Criteo also times ``read_criteo`` (arrays for CTR training) against ``pandas.read_csv``
into the same arrays. Files: the shared real slices (``../shared/data``) plus a synthetic
Taobao-format log scaled to N lines (written to a temporary directory) for throughput.

    python benchmarks/loaders.py --quick
    python benchmarks/loaders.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow.compute as pc
from _timing import median_seconds  # benchmarks/_timing.py (the script directory is on sys.path)

from funnel.data.loaders import SOURCE_ROW, get_loader, read_criteo
from funnel.data.loaders.criteo import COLUMNS as CRITEO_COLUMNS
from funnel.data.loaders.criteo import DENSE
from funnel.data.paths import shared_data_dir


def synthetic_taobao(path: Path, n: int, seed: int = 0) -> Path:
    """A Taobao UserBehavior-format log of ``n`` lines with the sample's behavior mix."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 1_000_000, n)
    items = rng.zipf(1.3, n) % 5_000_000
    cats = items % 9_000 + 1
    behavior = rng.choice(["pv", "cart", "fav", "buy"], n, p=[0.898, 0.053, 0.028, 0.021])
    ts = 1_511_500_000 + np.sort(rng.integers(0, 9 * 86_400, n))
    frame = pd.DataFrame({"u": users, "i": items, "c": cats, "b": behavior, "t": ts})
    frame.to_csv(path, header=False, index=False)
    return path


# ---------------------------------------------------------------------------------------------
# peers: parse only


def pandas_reader(name: str) -> Callable[[Path], Any]:
    if name == "taobao":
        return lambda p: pd.read_csv(
            p, header=None, names=["user_id", "item_id", "category_id", "behavior", "ts"],
            dtype={"user_id": "int64", "item_id": "int64", "category_id": "int64",
                   "behavior": "string", "ts": "int64"},
        )  # fmt: skip
    if name == "movielens":
        names = ["user_id", "item_id", "rating", "timestamp"]
        return lambda p: pd.read_csv(p, sep="\t", header=0, names=names)
    if name == "diginetica":
        return lambda p: pd.read_csv(p, sep=";", parse_dates=["eventdate"])
    if name == "criteo":
        return lambda p: pd.read_csv(p, sep="\t", header=None, names=list(CRITEO_COLUMNS))
    raise ValueError(name)


def duckdb_reader(name: str) -> Callable[[Path], Any]:
    options = {
        "taobao": "delim=',', header=false, columns={'user_id':'BIGINT','item_id':'BIGINT',"
        "'category_id':'BIGINT','behavior':'VARCHAR','ts':'BIGINT'}",
        "movielens": "delim='\t', header=true",
        "diginetica": "delim=';', header=true",
        "criteo": "delim='\t', header=false, all_varchar=true",
    }[name]

    def read(p: Path) -> Any:
        con = duckdb.connect()
        try:
            return con.sql(f"SELECT * FROM read_csv('{p}', {options})").to_arrow_table()
        finally:
            con.close()

    return read


def criteo_pandas_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What CTR code usually does: read_csv, then labels / dense floats / categorical strings."""
    frame = pd.read_csv(path, sep="\t", header=None, names=list(CRITEO_COLUMNS), dtype=str,
                        keep_default_na=False)  # fmt: skip
    labels = frame["label"].to_numpy(dtype=np.int8)
    dense = frame[list(DENSE)].replace("", np.nan).to_numpy(dtype=np.float32)
    categorical = frame.iloc[:, 14:].to_numpy(dtype=object)
    return labels, dense, categorical


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reps, 200k synthetic lines")
    parser.add_argument("--lines", type=int, default=None, help="synthetic Taobao lines")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    reps = 2 if args.quick else 5
    n_synth = args.lines or (200_000 if args.quick else 2_000_000)

    data = shared_data_dir()
    files = {
        "movielens": ("movielens", data / "movielens-100k" / "ml-100k.inter"),
        "taobao": ("taobao", data / "taobao-userbehavior-sample" / "UserBehavior_head.csv"),
        "criteo": ("criteo", data / "criteo-sample-8k" / "train.csv"),
        "diginetica": (
            "diginetica", data / "diginetica-sample-srgnn" / "sample_train-item-views.csv"
        ),
    }
    out: dict[str, float] = {"cpus": float(os.cpu_count() or 0), "reps": float(reps)}
    with tempfile.TemporaryDirectory() as tmp:
        files["taobao_synthetic"] = ("taobao", synthetic_taobao(Path(tmp) / "ub.csv", n_synth))
        print(f"{'file':<18} {'rows':>9} {'ours s':>8} {'pandas s':>9} {'duckdb s':>9} "
              f"{'ours/pandas':>11} {'ours rows/s':>12}")  # fmt: skip
        for key, (fmt, path) in files.items():
            if not path.exists():
                print(f"{key:<18} skipped: not found at {path}")
                continue
            loader = get_loader(fmt)
            tables = loader(path)
            rows = sum(t.num_rows for t in tables.kinds().values())
            # source lines = lines that gave events + lines rejected
            lines = len(pc.unique(tables.events.column(SOURCE_ROW))) + tables.rejected.num_rows
            ours = median_seconds(lambda loader=loader, path=path: loader(path), reps)
            peer_pd = median_seconds(lambda fmt=fmt, path=path: pandas_reader(fmt)(path), reps)
            peer_db = median_seconds(lambda fmt=fmt, path=path: duckdb_reader(fmt)(path), reps)
            out.update({
                f"{key}_lines": float(lines), f"{key}_rows_out": float(rows),
                f"{key}_ours_s": ours, f"{key}_pandas_s": peer_pd, f"{key}_duckdb_s": peer_db,
                f"{key}_ratio_pandas": ours / peer_pd, f"{key}_ratio_duckdb": ours / peer_db,
                f"{key}_lines_per_s": lines / ours,
            })  # fmt: skip
            print(f"{key:<18} {lines:>9,} {ours:>8.3f} {peer_pd:>9.3f} {peer_db:>9.3f} "
                  f"{ours / peer_pd:>11.2f} {lines / ours:>12,.0f}")  # fmt: skip

    criteo = files["criteo"][1]
    if criteo.exists():
        ours = median_seconds(lambda: read_criteo(criteo), reps)
        peer = median_seconds(lambda: criteo_pandas_arrays(criteo), reps)
        mine, theirs = read_criteo(criteo), criteo_pandas_arrays(criteo)
        same = (
            np.array_equal(mine.labels, theirs[0])
            and np.array_equal(mine.dense, theirs[1], equal_nan=True)
            and (mine.categorical == theirs[2]).all()
        )
        out.update({"read_criteo_s": ours, "read_criteo_pandas_s": peer,
                    "read_criteo_ratio_pandas": ours / peer,
                    "read_criteo_same_arrays": float(same)})  # fmt: skip
        print(f"read_criteo arrays: ours {ours:.3f}s, pandas {peer:.3f}s, ratio {ours / peer:.2f}, "
              f"identical arrays: {same}")  # fmt: skip

    if args.json:
        args.json.write_text(json.dumps(out, indent=2, sort_keys=True))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
