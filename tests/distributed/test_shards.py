"""Parquet shards of ranking rows: exact round trip, disjoint per-process reads, named errors,
and the streamed feature fit equal to ``FeatureSet.fit``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from funnel.distributed.shards import LABEL, Shards, batch_columns, write_shards
from funnel.distributed.spec_fit import merged_feature_set, partial_fit
from funnel.exceptions import ConfigError
from funnel.features.specs import FeatureSet
from funnel.rank.base import RankingData, specs_of
from rank._data import SPECS, interaction_data  # tests/ is on sys.path (rootdir packages)


def test_round_trip_is_exact(tmp_path: Path):
    data = interaction_data(230, seed=3)[0]
    data.columns["clicks"] = np.empty(230, dtype=object)
    data.columns["clicks"][:] = [[f"i{k}" for k in range(i % 4)] for i in range(230)]
    data.columns["brand"] = np.array([None if i % 7 == 0 else f"b{i % 5}" for i in range(230)],
                                     dtype=object)
    data.negative_rate = 0.25
    files = write_shards(data, tmp_path, rows_per_file=50)
    assert [f.name for f in files] == [f"part-{k:05d}.parquet" for k in range(5)]
    back = Shards.open(tmp_path).read_all()
    assert back.negative_rate == 0.25 and len(back) == 230
    assert np.array_equal(back.label, data.label) and back.label.dtype == np.float32
    assert back.group is not None and np.array_equal(back.group, data.group)
    assert sorted(back.columns) == sorted(data.columns)
    for k, v in data.columns.items():
        assert back.columns[k].tolist() == v.tolist(), k
        assert back.columns[k].dtype == v.dtype, k


def test_each_rank_reads_disjoint_files_covering_every_row(tmp_path: Path):
    data = interaction_data(1000, seed=4)[0]
    data.columns["row"] = np.arange(1000)
    write_shards(data, tmp_path, rows_per_file=130)  # 8 files, the last one short
    shards = Shards.open(tmp_path)
    seen: list[int] = []
    for rank in range(3):
        mine = shards.of_rank(rank, 3)
        assert mine.files == shards.files[rank::3]
        rows = []
        for start, batch in mine.batches(64, columns=["row"]):
            cols, _ = batch_columns(batch)
            assert cols["row"][0] == start  # the global row index travels with the batch
            rows.extend(cols["row"].tolist())
        assert len(rows) == len(mine)
        seen.extend(rows)
    assert sorted(seen) == list(range(1000))


MORE_SPECS = [
    {"type": "vocab", "name": "item_id", "min_count": 3, "max_size": 40},
    {"type": "history", "name": "clicks_category", "column": "clicks", "attribute": "category"},
    {"type": "history", "name": "clicks_price", "column": "clicks", "attribute": "price",
     "n_buckets": 4},
    {"type": "vocab_sequence", "name": "clicks_ids", "column": "clicks", "key": "item_id",
     "min_count": 3},
    {"type": "vocab_sequence", "name": "clicks_own", "column": "clicks", "max_len": 3},
    {"type": "sequence", "name": "clicks_hashed", "column": "clicks", "bits": 8},
    {"type": "cross", "name": "user_x_item", "columns": ["user_group", "item_group"], "bits": 8},
]


def test_streamed_feature_fit_equals_one_process_fit(tmp_path: Path):
    data = interaction_data(3000, seed=1)[0]
    rng = np.random.default_rng(0)
    item = rng.integers(0, 120, 3000)
    data.columns["item_id"] = np.array([f"it{i}" for i in item], dtype=object)
    data.columns["category"] = np.array([f"c{i % 9}" for i in item], dtype=object)
    data.columns["price"] = np.where(rng.random(3000) < 0.05, np.nan, item * 1.5)
    data.columns["clicks"] = np.empty(3000, dtype=object)
    data.columns["clicks"][:] = [[f"it{i}" for i in rng.integers(0, 130, rng.integers(0, 6))]
                                 for _ in range(3000)]
    write_shards(data, tmp_path, rows_per_file=400)
    shards, specs = Shards.open(tmp_path), specs_of([*SPECS, *MORE_SPECS])
    parts = [partial_fit(specs, ((s, batch_columns(b)[0])
                                 for s, b in shards.of_rank(r, 3).batches(97)), 1.0)
             for r in range(3)]
    streamed = merged_feature_set(specs, parts)
    whole = FeatureSet(specs).fit(data.columns)
    for mine, theirs in zip(streamed.to_dict()["states"], whole.to_dict()["states"],
                            strict=True):  # vocabularies, edges, history items: exact
        assert mine == pytest.approx(theirs) if "mean" in mine else mine == theirs
    a, b = streamed.transform(data.columns), whole.transform(data.columns)
    assert np.array_equal(a.idx, b.idx) and np.allclose(a.val, b.val, atol=1e-6)
    assert streamed.num_features == whole.num_features


def test_shard_errors_name_the_path_and_the_fix(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"nowhere: no such directory; write the rows with"):
        Shards.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: no part-\*\.parquet files"):
        Shards.open(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    pq.write_table(pa.table({"x": [1.0, 2.0]}), tmp_path / "bad" / "part-00000.parquet")
    with pytest.raises(ConfigError, match=rf"part-00000.parquet: no '{LABEL}' column; add"):
        Shards.open(tmp_path / "bad")
    data = RankingData({"x": np.arange(3.0)}, np.array([0, 1, 0]))
    write_shards(data, tmp_path / "once", 2)
    with pytest.raises(FileExistsError, match="once: holds 2 shard file"):
        write_shards(data, tmp_path / "once", 2)
