"""Each process reads its own Parquet files, and the merged vocabulary is the one-process one.

``funnel.distributed.corpus_shards``: file listing and split, streaming with the estimators'
filtering, and the count merge. The in-process tests use a world of one (the encoded shard must
then equal ``build_corpus`` on the whole table, tokens included); the torchrun test merges
three processes' counts, one of them without files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch.distributed as dist

from funnel.distributed.corpus_shards import (
    ItemTokens,
    QueryTokens,
    build_shard_corpus,
    parquet_files,
    shard_files,
    stream,
)
from funnel.distributed.train_embed import main
from funnel.embed import ItemEmbeddings, QueryEmbeddings
from funnel.embed.simulate import SessionSimConfig, simulate_sessions

from .test_ddp_embed import torchrun_embed, write_days


@pytest.fixture(scope="module")
def sim() -> tuple[pa.Table, pa.Table]:
    return simulate_sessions(SessionSimConfig(n_sessions=1500, seed=3))


@pytest.fixture
def world_of_one() -> Iterator[None]:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_parquet_files_lists_partitions_in_order_and_skips_markers(tmp_path: Path):
    t = pa.table({"items": [["a", "b"]]})
    for rel in ["dt=2026-01-02/part-1.parquet", "dt=2026-01-01/part-0.parquet",
                "dt=2026-01-02/part-0.parquet", "_temporary/x.parquet",
                "dt=2026-01-01/.part-0.parquet.crc.parquet"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, tmp_path / rel)
    (tmp_path / "_SUCCESS").touch()
    got = [p.relative_to(tmp_path).as_posix() for p in parquet_files(tmp_path)]
    assert got == ["dt=2026-01-01/part-0.parquet", "dt=2026-01-02/part-0.parquet",
                   "dt=2026-01-02/part-1.parquet"]
    one = tmp_path / "dt=2026-01-01/part-0.parquet"
    assert parquet_files(one) == [one]


def test_shards_of_files_are_disjoint_and_cover_all():
    files = [Path(f"f{i}.parquet") for i in range(5)]
    for world in (1, 2, 3, 5, 7):
        parts = [shard_files(files, r, world) for r in range(world)]
        flat = [f for p in parts for f in p]
        assert sorted(flat) == files and len(set(flat)) == len(files)
        assert parts[0][0] == files[0]
    assert shard_files(files, 6, 7) == []  # more processes than files: some read nothing
    with pytest.raises(ValueError, match="rank must be in \\[0, world\\).*rank=2, world=2"):
        shard_files(files, 2, 2)


def test_a_directory_without_parquet_is_a_one_line_error_naming_it(tmp_path: Path, capsys):
    (tmp_path / "dt=2026-01-01").mkdir()
    (tmp_path / "dt=2026-01-01" / "part-0.csv").write_text("x\n")
    with pytest.raises(ValueError, match=f"^{tmp_path}: no \\*.parquet files.*corpora/ or "
                                         "sessions/ output") as err:
        parquet_files(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(SystemExit) as stop:  # the CLI says it before joining any process group
        main(["--sessions", str(tmp_path), "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: {tmp_path}: no *.parquet files in this directory; point" in last
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or directory; pass"):
        parquet_files(tmp_path / "nowhere")


def test_a_missing_column_names_the_file_and_the_table_to_use(tmp_path: Path):
    pq.write_table(pa.table({"items": [["a", "b"]]}), tmp_path / "part-0.parquet")
    with pytest.raises(ValueError, match="part-0.parquet: no 'queries' column .* sessions/ "
                                         "table: corpora/ has no queries"):
        list(stream([tmp_path / "part-0.parquet"], QueryTokens()))


@pytest.mark.parametrize("params, catalog", [
    ({}, True),  # catalog markets, dwell filter, booked context
    ({"min_count": 20, "min_dwell_ms": 0}, False),  # session-market votes, rare items dropped
    ({"booked_context": False, "min_count": 3}, False),
])
def test_a_world_of_one_encodes_the_corpus_fit_builds(tmp_path, sim, world_of_one, params,
                                                      catalog):
    sessions, items = sim
    files = parquet_files(write_days(sessions, tmp_path / "sessions", 4))
    est = ItemEmbeddings(**params)
    want = est._corpus(sessions, items if catalog else None)
    markets = dict(zip(items["item_id"].to_pylist(), items["market"].to_pylist(), strict=True))
    got = build_shard_corpus(
        files, ItemTokens(est.min_dwell_ms, est.booked_context), min_count=est.min_count,
        item_markets=markets if catalog else None, batch_rows=128)
    c = got.local
    assert c.vocab == want.vocab and c.counts.tolist() == want.counts.tolist()
    assert c.markets == want.markets and c.word_market.tolist() == want.word_market.tolist()
    for name in ("tokens", "offsets", "booked"):
        assert np.array_equal(getattr(c, name), getattr(want, name)), name
    assert (got.n_sessions, got.n_tokens, got.n_rows) == (want.n_sessions, want.n_tokens,
                                                          sessions.num_rows)


def test_a_world_of_one_encodes_the_query_corpus_fit_builds(tmp_path, sim, world_of_one):
    sessions, _ = sim
    odd = pa.table({"queries": pa.array([["Red  Shoes", "red shoes", "!!", "RED shoes", None],
                                         None, ["a", " "]], pa.list_(pa.string()))})
    table = pa.concat_tables([sessions.select(["queries"]), odd])
    files = parquet_files(write_days(table, tmp_path / "sessions", 3))
    want = QueryEmbeddings()._corpus(table, None)
    c = build_shard_corpus(files, QueryTokens(), batch_rows=100).local
    assert c.vocab == want.vocab and c.counts.tolist() == want.counts.tolist()
    assert np.array_equal(c.tokens, want.tokens) and np.array_equal(c.offsets, want.offsets)
    assert c.markets == want.markets == []


@pytest.mark.slow
def test_three_processes_merge_the_vocabulary_exactly_one_reading_nothing(tmp_path, sim):
    """sessions/ files with dwell, no catalog (markets by vote), rare items dropped; two files
    for three processes, so rank 2 reads none and still takes part in every collective."""
    sessions, _ = sim
    root = write_days(sessions, tmp_path / "sessions", 2)
    params = {"dim": 4, "epochs": 1, "min_count": 3, "seed": 0, "n_threads": 1}
    torchrun_embed(["--sessions", str(root), "--params", json.dumps(params),
                    "--batch-rows", "200", "--out", str(tmp_path / "ddp")], nproc=3)
    ddp = ItemEmbeddings.load(tmp_path / "ddp")
    one = ItemEmbeddings(**params).fit(sessions)
    assert ddp.vocab_ == one.vocab_ and ddp.counts_.tolist() == one.counts_.tolist()
    assert ddp.markets_ == one.markets_
    assert (ddp.n_sessions_, ddp.n_tokens_) == (one.n_sessions_, one.n_tokens_)
    assert min(one.counts_) >= 3 and len(one.vocab_) < 720  # the filter did drop items
    meta = json.loads((tmp_path / "ddp" / "distributed.json").read_text())
    every = sorted(str(p) for p in root.rglob("*.parquet"))
    assert meta["files"] == [[every[0]], [every[1]], []]
