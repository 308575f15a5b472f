"""The engine's seams are the Protocols of ``funnel.engine``: a loaded engine's stages satisfy
them, the engine's fields and helpers are typed with them (no ``Any``), and evaluation gets
its own engine instead of changing the one it was given."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import textwrap
from pathlib import Path

import pytest

from funnel.engine import (
    CandidateMerger,
    RankStage,
    RecallStage,
    RerankStage,
    SharesTerms,
    SuggestStage,
)
from funnel.engine.core import Engine
from funnel.features.personalization import RecentActions

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from funnel.build import synthetic_workspace

    ws = synthetic_workspace(tmp_path_factory.mktemp("protocols"), events=30_000, seed=3)
    eng = Engine.load(ws.artifacts.require_current())
    yield eng
    eng.close()


def test_a_loaded_engines_stages_satisfy_the_protocols(engine):
    assert isinstance(engine.recall, RecallStage)
    assert isinstance(engine.recall.merger, CandidateMerger)
    assert isinstance(engine.rank, RankStage) and isinstance(engine.rank, SharesTerms)
    assert isinstance(engine.rerank, RerankStage)
    assert isinstance(engine.search_rerank, RerankStage)
    assert isinstance(engine.suggest, SuggestStage)
    assert engine.rerank.catalog is not None and hasattr(engine.rerank.catalog, "rows")
    # the stages are aligned to the catalog, the one item table
    assert engine.rank.n_rows == len(engine.catalog) == len(engine.rerank.catalog)
    assert isinstance(engine.recall.config.session_exclude_recent, bool)


def test_other_objects_do_not():
    assert not isinstance(object(), RecallStage)
    assert not isinstance(object(), RankStage)
    assert not isinstance(object(), RerankStage)
    assert not isinstance(object(), SuggestStage)


def test_the_engine_is_typed_by_the_protocols_at_its_seams():
    fields = {f.name: str(f.type) for f in dataclasses.fields(Engine)}
    assert fields["recall"] == "RecallStage"
    assert fields["rank"] == "RankStage | None"
    assert fields["rerank"] == fields["search_rerank"] == "RerankStage"
    assert fields["suggest"] == "SuggestStage | None"
    assert not [name for name, t in fields.items() if "Any" in t]
    for name in ("run", "rerank_features", "_catalog_rows", "similar", "with_recall_deadline"):
        sig = inspect.signature(getattr(Engine, name))
        annotations = [str(p.annotation) for p in sig.parameters.values()]
        assert "Any" not in [*annotations, str(sig.return_annotation)], name


def test_evaluation_gets_its_own_engine(engine):
    from funnel.evaluate.replay import OFFLINE_RECALL_TIMEOUT_S, offline_engine

    served = engine.recall.merger
    before = served.timeout_s
    offline = offline_engine(engine)
    assert offline is not engine and offline.recall is not engine.recall
    assert engine.recall.merger is served and served.timeout_s == before  # unchanged
    assert offline.recall.merger.timeout_s == OFFLINE_RECALL_TIMEOUT_S
    assert offline.recall.sources is engine.recall.sources  # the stages are shared, not copied
    assert offline.rank is engine.rank and offline.catalog is engine.catalog
    kw = {"user_id": None, "market": None, "filters": {}, "k": 10,
          "state": RecentActions(clicks=tuple(engine.catalog.ids[:3].tolist()))}
    for query in ("", str(engine.catalog.columns["title"][4])):
        a, b = engine.run(query=query, **kw), offline.run(query=query, **kw)
        assert (a.item_ids, a.scores, a.kinds) == (b.item_ids, b.scores, b.kinds)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed")
def test_the_concrete_stages_conform_statically(tmp_path):
    """mypy: each concrete class is assignable to its Protocol (signatures included)."""
    from mypy import api

    check = tmp_path / "conforms.py"
    check.write_text(textwrap.dedent("""
        from funnel.engine import (
            CandidateMerger, RankStage, RecallStage, RerankStage, SharesTerms, SuggestStage,
        )
        from funnel.rank.serving import ServingRanker
        from funnel.recall.build import RecallBundle
        from funnel.recall.merger import Merger
        from funnel.rerank.pipeline import RerankPipeline
        from funnel.suggest.model import QuerySuggester


        def conforms(a: RecallBundle, b: ServingRanker, c: RerankPipeline,
                     d: QuerySuggester, m: Merger) -> list[object]:
            recall: RecallStage = a
            rank: RankStage = b
            shares: SharesTerms = b
            rerank: RerankStage = c
            suggest: SuggestStage = d
            merger: CandidateMerger = m
            return [recall, rank, shares, rerank, suggest, merger]
    """))
    out, err, status = api.run([
        "--follow-imports=silent", "--ignore-missing-imports", "--no-incremental",
        "--cache-dir", str(tmp_path / "cache"), str(check),
        str(SRC / "funnel" / "engine" / "__init__.py"), str(SRC / "funnel" / "engine" / "core.py"),
    ])
    assert status == 0, out + err


def test_the_generative_source_joins_a_new_recall_bundle(monkeypatch, tmp_path):
    """Loading an artifact with a generative source builds a new bundle and merger; the one
    recall loaded is left as it was."""
    import numpy as np

    import funnel.generative.build as generative_build
    from funnel.engine.core import GENERATIVE_QUOTA, _with_generative
    from funnel.recall.base import Candidates, RecallRequest
    from funnel.recall.build import RecallBundle, RecallConfig
    from funnel.recall.merger import Merger

    class Fixed:
        def __init__(self, name: str, ids: list[str]) -> None:
            self.name, self.ids = name, ids

        def candidates(self, request):
            return Candidates(np.array(self.ids, dtype=object),
                              np.ones(len(self.ids), np.float32))

    popular = Fixed("popularity", ["a", "b"])
    monkeypatch.setattr(generative_build, "load_generative",
                        lambda _dir: Fixed("generative", ["c"]))
    merger = Merger([popular], quotas={"popularity": 5}, timeout_s=0.5, inline=("popularity",))
    bundle = RecallBundle(sources={"popularity": popular}, merger=merger, config=RecallConfig())
    new = _with_generative(bundle, tmp_path)
    assert bundle.sources == {"popularity": popular} and bundle.merger is merger
    assert set(new.sources) == {"popularity", "generative"} and new.config is bundle.config
    assert new.merger.quotas == {"popularity": 5, "generative": GENERATIVE_QUOTA}
    assert set(new.merger.inline) == {"popularity", "generative"}
    assert new.merger.timeout_s == 0.5
    assert sorted(new.merger.recall(RecallRequest(k=10)).item_ids.tolist()) == ["a", "b", "c"]
    new.merger.close()
