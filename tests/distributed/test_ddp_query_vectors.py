"""torchrun --nproc-per-node 2 trains query vectors from sessions/ files as one process does.

Data: 4,000 planted sessions, 5 categories x 8 queries ("c3 q5"); a session's 1-3 queries
share its category, so the only structure is the category. Held-out metric: next-query HR@5
on the last 20% of sessions (predict a session's last distinct query from the one before;
chance 5/39, a perfect category grouping ~5/7) and the share of each query's 3 nearest
neighbours in its category. Measured (dim 16, 10 epochs; seeds 1 / 2): one process HR@5
0.757 / 0.727, MRR 0.384 / 0.359; two processes (3 + 2 day files) 0.735 / 0.725, MRR 0.378 /
0.371; neighbour share 1.0 in all four (saturated: the vocabulary check is the sharper one).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from funnel.embed import QueryEmbeddings
from funnel.embed.corpus import normalize_query
from funnel.embed.evaluate import neighbour_cohesion, next_click_metrics, split_sessions
from funnel.embed.simulate import SessionSimConfig, simulate_sessions

from .test_ddp_embed import torchrun_embed, write_days

PARAMS = {"dim": 16, "epochs": 10, "seed": 0, "n_threads": 1}


def query_quality(q: QueryEmbeddings, test: pa.Table) -> dict[str, float]:
    """Next-query HR@5 / MRR on held-out sessions, and same-category neighbour share."""
    seqs = [[normalize_query(x) for x in (qs or []) if x] for qs in test["queries"].to_pylist()]
    as_items = pa.table({"items": pa.array(seqs, pa.list_(pa.string()))})
    category = {t: t.split()[0] for t in q.vocab_}
    return {**next_click_metrics(q.vocab_, q.vectors_, as_items, k=5),
            "cat_cohesion": neighbour_cohesion(q.vocab_, q.vectors_, category, k=3)}


@pytest.mark.slow
def test_two_process_query_vectors_match_one_process(tmp_path: Path):
    sessions, _ = simulate_sessions(SessionSimConfig(n_sessions=4000, seed=1,
                                                     queries_per_category=8))
    train, test = split_sessions(sessions, 0.2)
    root = write_days(train, tmp_path / "sessions", 5)
    torchrun_embed(["--table", "query", "--sessions", str(root), "--params",
                    json.dumps(PARAMS), "--batch-rows", "300", "--out", str(tmp_path / "ddp")])
    ddp = QueryEmbeddings.load(tmp_path / "ddp")  # the format the build and serving load
    one = QueryEmbeddings(**PARAMS).fit(train)
    assert ddp.vocab_ == one.vocab_ and ddp.counts_.tolist() == one.counts_.tolist()
    assert (ddp.n_sessions_, ddp.n_tokens_) == (one.n_sessions_, one.n_tokens_)
    assert "C1   Q0" in ddp  # normalized lookups
    q_ddp, q_one = query_quality(ddp, test), query_quality(one, test)
    assert q_one["n"] == q_ddp["n"] > 300
    assert q_one["hr@5"] > 0.5, q_one  # chance 5/39
    assert abs(q_ddp["hr@5"] - q_one["hr@5"]) < 0.05, (q_one, q_ddp)
    assert abs(q_ddp["mrr"] - q_one["mrr"]) < 0.04, (q_one, q_ddp)
    assert abs(q_ddp["cat_cohesion"] - q_one["cat_cohesion"]) < 0.05, (q_one, q_ddp)
    meta = json.loads((tmp_path / "ddp" / "distributed.json").read_text())
    assert meta["table"] == "query" and [len(f) for f in meta["files"]] == [3, 2]
