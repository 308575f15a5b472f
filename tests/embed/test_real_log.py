"""Item embeddings on a real click log (DIGINETICA sample), read through loaders + sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from funnel.data.paths import shared_data_dir
from funnel.embed import ItemEmbeddings
from funnel.embed.build import read_tables
from funnel.embed.evaluate import next_click_metrics, split_sessions

LOG = shared_data_dir() / "diginetica-sample-srgnn" / "sample_train-item-views.csv"


@pytest.fixture(scope="module")
def diginetica(tmp_path_factory: pytest.TempPathFactory) -> pa.Table:
    if not LOG.exists():
        pytest.skip(f"DIGINETICA sample not found at {LOG}")
    from funnel.data.ingest import ingest_file
    from funnel.pipeline.sessions import build_sessions
    from funnel.workspace import Workspace

    ws = Workspace.init(Path(tmp_path_factory.mktemp("dg")) / "ws")
    ingest_file(ws, LOG, "diginetica")
    con = ws.connect()
    try:
        build_sessions(con)
    finally:
        con.close()
    sessions, _ = read_tables(ws)
    return sessions


@pytest.mark.slow
def test_real_log_embeddings_learn_co_clicks_and_predict_next_clicks(diginetica) -> None:
    assert diginetica.num_rows > 2500  # 2,986 source sessions, re-derived by the 30-min rule
    train, test = split_sessions(diginetica, 0.2)
    emb = ItemEmbeddings(dim=32, epochs=30, window=3, sample=0.0, min_dwell_ms=0).fit(train)
    # 1) share of co-clicked training pairs whose partner ranks in the item's top 1% of all
    #    items: chance 0.01, measured 0.25 (gensim Word2Vec, same settings: 0.24).
    #    Raw cosines are not compared: SGNS vectors share a common direction on sparse logs
    #    (random pairs have cosine ~0.87 here).
    pairs = [(emb.index_[a], emb.index_[b]) for row in train.column("items").to_pylist()
             for a, b in zip(row, row[1:], strict=False) if a != b and a in emb and b in emb]
    a_idx, b_idx = np.array(pairs).T
    scores = emb.vectors_[a_idx] @ emb.vectors_.T
    ranks = (scores > scores[np.arange(len(b_idx)), b_idx][:, None]).sum(axis=1)
    top1 = float(np.mean(ranks < 0.01 * len(emb.vocab_)))
    assert top1 > 0.15
    # 2) held-out next click: far above chance (10 / ~5,500 candidates ~ 0.002); measured 0.07
    #    on only ~70 scorable test sessions, so the bound is loose
    metrics = next_click_metrics(emb.vocab_, emb.vectors_, test)
    assert metrics["n"] >= 50
    assert metrics["hr@10"] > 0.02
