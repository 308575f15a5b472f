"""The merger's provenance is built when read, and reads exactly as the list of dicts the merger
used to build: the same keys in the same order, the same scores, for any source outputs
(duplicates within a source included)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.merger import Merger, Provenance


class Listed:
    """A source that answers a fixed list."""

    def __init__(self, name: str, ids: list[str], scores: list[float]) -> None:
        self.name = name
        self._ids, self._scores = ids, scores

    def candidates(self, request: RecallRequest) -> Candidates:
        return Candidates(
            item_ids=np.array(self._ids, dtype=object),
            scores=np.array(self._scores, dtype=np.float32),
        )


def _reference(merged_ids: list[str], outputs: dict[str, tuple[list[str], list[float]]],
               quotas: dict[str, int]) -> list[dict[str, float]]:
    """Provenance as the merger built it before: every entry of every source, in merge order."""
    pos = {item: i for i, item in enumerate(merged_ids)}
    prov: list[dict[str, float]] = [{} for _ in merged_ids]
    for name, (ids, scores) in outputs.items():
        for item, score in zip(ids[: quotas[name]], scores[: quotas[name]], strict=True):
            if item in pos:
                prov[pos[item]][name] = float(np.float32(score))
    return prov


source_lists = st.lists(
    st.tuples(st.sampled_from("abcdefghij"), st.integers(-50, 50)), max_size=12
)


@settings(max_examples=60, deadline=None)
@given(st.lists(source_lists, min_size=1, max_size=4), st.integers(1, 12))
def test_provenance_reads_as_the_list_of_dicts(lists, k):
    outputs = {
        f"s{j}": ([item for item, _ in entries], [float(v) / 7 for _, v in entries])
        for j, entries in enumerate(lists)
    }
    quotas = {name: 1 + j * 3 for j, name in enumerate(outputs)}
    merger = Merger([Listed(n, *o) for n, o in outputs.items()], quotas=quotas,
                    inline=list(outputs))
    out = merger.recall(RecallRequest(k=k))
    want = _reference(out.item_ids.tolist(), outputs, quotas)
    got = out.provenance
    assert len(got) == len(want)
    assert [list(p.items()) for p in got] == [list(p.items()) for p in want]  # order too
    assert got == want and got[-1:] == want[-1:]
    if isinstance(got, Provenance):
        for name in outputs:
            np.testing.assert_array_equal(got.found_by(name), [name in p for p in want])
        assert not got.found_by("nobody").any()


def test_provenance_indexing_errors_name_the_index():
    prov = Provenance(["a"], np.array([0, 1, -1]), np.array([0, 0, 0]),
                      np.array([1.0, 2.0, 3.0]), 2)
    assert prov[-1] == {"a": 2.0} and prov[0] == {"a": 1.0} and prov[5:] == []
    with pytest.raises(IndexError, match="provenance index 2 out of range for 2 candidates"):
        prov[2]
