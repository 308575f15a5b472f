"""What one recall source adds: ``no_generative`` in the replay, the paired recall gain.

A planted "generative" source that proposes the held-out targets themselves must show a gain;
dropping it again must give back the served engine's figures exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from funnel.engine.core import Engine
from funnel.evaluate.cases import held_out_cases
from funnel.evaluate.replay import margin_figures, offline_engine, replay, variants_of
from funnel.evaluate.stages import recall_figures
from funnel.recall.base import Candidates, RecallRequest
from funnel.workspace import Workspace

from .conftest import Evaluated

pytestmark = pytest.mark.slow


class Planted:
    """Proposes the same few items (held-out targets) for every request."""

    name = "generative"

    def __init__(self, items: list[str]) -> None:
        self.items = np.asarray(items, dtype=object)

    def candidates(self, request: RecallRequest) -> Candidates:
        ids = self.items[: request.k]
        return Candidates(ids, np.linspace(1.0, 0.5, len(ids)).astype(np.float32))


@pytest.fixture(scope="module")
def engines(evaluated: Evaluated):
    artifact = Workspace.open(evaluated.out / "train-workspace").artifacts.require_current()
    served = offline_engine(Engine.load(artifact))
    con = evaluated.ws.connect(read_only=True)
    try:
        held = held_out_cases(con, evaluated.split_ms)
    finally:
        con.close()
    for kind in held.cases:  # a few cases keep this quick
        held.cases[kind] = held.cases[kind][:15]
    targets = list(dict.fromkeys(t for kind in ("search", "next_click")
                                 for case in held.cases[kind] for t in case.targets))
    assert targets
    planted = served.with_recall_source(Planted(targets[:40]), quota=40)
    yield served, planted, held
    planted.close()
    served.close()


def test_engine_with_and_without_a_source_leaves_the_served_one_alone(engines) -> None:
    served, planted, _ = engines
    assert "generative" not in served.recall.sources
    assert "generative" in planted.recall.sources
    dropped = planted.without_recall_source("generative")
    assert set(dropped.recall.sources) == set(served.recall.sources)
    assert [s.name for s in dropped.recall.merger.sources] == \
        [s.name for s in served.recall.merger.sources]
    with pytest.raises(KeyError, match="no recall source 'nope'"):
        served.without_recall_source("nope")


def test_recall_gain_is_the_paired_difference_and_dropping_restores(engines) -> None:
    served, planted, held = engines
    base = recall_figures(served, held, (10, 100))
    with_source = recall_figures(planted, held, (10, 100))
    assert not any(k.startswith("recall.generative_gain") for k in base)
    for label in ("click", "booking"):
        key = f"recall.merged.{label}.recall@100"
        if key not in base:
            continue
        # the merger without the source is the served one: same figure, to the last digit
        assert with_source[f"recall.merged_without_generative.{label}.recall@100"] == base[key]
        gain = with_source[f"recall.generative_gain.{label}.recall@100"]
        assert gain == pytest.approx(with_source[key] - base[key], abs=1e-12)
        assert with_source[f"recall.generative_gain.{label}.recall@100.ci95"] >= 0.0
    # the planted source proposes the click targets: the merged list finds more of them
    assert with_source["recall.generative_gain.click.recall@100"] > 0.0


def test_replay_has_a_no_generative_variant_equal_to_the_served_engine(engines) -> None:
    served, planted, held = engines
    assert "no_generative" not in variants_of(served)
    assert variants_of(planted)[-1] == "no_generative"
    plain = replay(served, held, k=10)
    result = replay(planted, held, k=10)
    # the variant without the source shows what the served engine shows
    assert result.scores["no_generative"].lists == plain.scores["funnel"].lists
    gains = margin_figures(result, 10, "no_generative")
    assert "gain.funnel_vs_no_generative.search.ndcg@10.ci95" in gains
