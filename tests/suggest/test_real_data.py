"""The completion index on real query text: TREC-05 efficiency-track queries."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.data.paths import shared_data_dir
from funnel.suggest.completion import QueryCompleter
from funnel.suggest.normalize import normalize_query

TREC = shared_data_dir() / "trec05-efficiency-queries-autocomplete" / \
    "trec_05_efficiency_queries.completions"


@pytest.mark.slow
def test_trec05_completion_equals_full_scan() -> None:
    if not TREC.exists():
        pytest.skip(f"TREC-05 completions not found at {TREC}")
    best: dict[str, float] = {}
    for line in TREC.read_text(encoding="utf-8").splitlines():
        qid, _, raw = line.partition(" ")
        q = normalize_query(raw)
        if q:  # several raw queries normalize to one; keep its best (lowest id) score
            best[q] = max(best.get(q, 0.0), 1.0 / (int(qid) + 1))
    queries = list(best)
    scores = np.array([best[q] for q in queries])
    assert len(queries) > 40_000
    qc = QueryCompleter(typo_min_len=99).fit(queries, scores)
    rng = np.random.default_rng(0)
    order = sorted(range(len(queries)), key=queries.__getitem__)
    keys = [queries[i] for i in order]
    for i in rng.choice(len(queries), 150, replace=False):
        q = queries[i]
        p = q[: int(rng.integers(1, len(q) + 1))]
        hits = sorted((-best[k], k) for k in keys if k.startswith(p))[:10]
        assert qc.complete(p, 10, normalize=False)[0] == [k for _, k in hits], p
    typo = QueryCompleter().fit(queries, scores)
    assert "manual transmission shifters" in typo.complete("manaul transm", 10)[0]
