"""The rank build's time split: streamed to shards it gives the rows the in-memory split gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from funnel.build import synthetic_workspace
from funnel.features.training_set import TrainingRows, TrainingSetConfig, build_training_set
from funnel.rank import split as split_module
from funnel.rank.split import _pieces, memory_split, streamed_split, time_split


def test_pieces_cut_at_the_slices_and_the_shard_files_by_hand():
    tr, va = slice(0, 12), slice(12, 15)
    assert _pieces(8, 10, tr, va, per_file=5) == [
        (8, 10, "train"), (10, 12, "train"), (12, 15, "valid"), (15, 18, "test")]
    assert _pieces(0, 4, tr, va, per_file=5) == [(0, 4, "train")]
    assert _pieces(20, 0, tr, va, per_file=5) == []


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    ws = synthetic_workspace(tmp_path_factory.mktemp("split") / "ws", events=6_000, stages=())
    con = ws.connect(read_only=True)
    yield con
    con.close()


KEEP = {"event_id", "group_id", "click", "booking", "item_id", "position", "hist_items"}


@pytest.mark.parametrize(("negative_rate", "keep"), [(1.0, None), (0.4, KEEP)])
def test_the_streamed_split_holds_the_rows_of_the_in_memory_split(
    store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, negative_rate: float,
    keep: set[str] | None,
):
    config = TrainingSetConfig(seed=3)
    table = build_training_set(store, config)
    whole = memory_split(table, time_split(table.num_rows, 0.1, 0.2), negative_rate, seed=5,
                         keep=keep)
    monkeypatch.setattr(split_module, "SHARD_ROWS", 700)  # several files per process
    with TrainingRows.open(store, config, partition_rows=900) as rows:
        streamed = streamed_split(rows, 0.1, 0.2, negative_rate, 5, tmp_path / "train", 2,
                                  keep=keep, batch_rows=333)
    shards = streamed.train_shards
    assert shards is not None and len(shards.files) >= 4 and len(shards.files) % 2 == 0
    assert shards.negative_rate == negative_rate
    train, expected = shards.read_all(), whole.train()
    assert len(train) == len(expected) == streamed.train_rows
    np.testing.assert_array_equal(train.label, expected.label)
    np.testing.assert_array_equal(train.group, expected.group)
    assert set(train.columns) == set(expected.columns) == \
        (set(table.column_names) if keep is None else keep)
    for column, values in expected.columns.items():  # repr: NaN equals NaN
        assert list(map(repr, train.columns[column].tolist())) == \
            list(map(repr, values.tolist())), column
    for name in ("valid_rows", "test_rows", "clicked_train_rows"):
        assert getattr(streamed, name).equals(getattr(whole, name)), name
    assert streamed.click_rate == whole.click_rate
    held_out = pa.concat_tables([streamed.valid_rows, streamed.test_rows])
    assert held_out.num_rows == table.num_rows - time_split(table.num_rows, 0.1, 0.2)[0].stop
