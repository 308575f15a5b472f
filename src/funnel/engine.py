"""The funnel's stages as the engine sees them: a few verbs each, typed.

:class:`funnel.serve.engine.Engine` holds one recall, rank, re-rank and suggest stage of an
artifact and calls only what these Protocols name; the concrete classes
(:class:`funnel.recall.build.RecallBundle`, :class:`funnel.rank.serving.ServingRanker`,
:class:`funnel.rerank.pipeline.RerankPipeline`, :class:`funnel.suggest.model.QuerySuggester`)
satisfy them structurally (``tests/test_engine_protocols.py`` checks a loaded engine). Inside a
stage anything goes; at the seams, these types.

Attributes are declared as read-only properties: the engine reads them and never assigns them
(a loaded engine is frozen: evaluation builds its own with :func:`dataclasses.replace`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: this module imports no stage
    import numpy as np

    from funnel.features.personalization import RecentActions
    from funnel.features.query_match import TermIndex
    from funnel.recall.base import RecallRequest
    from funnel.recall.merger import MergedCandidates
    from funnel.rerank.base import ItemFeatures

__all__ = [
    "CandidateMerger",
    "RankStage",
    "RecallSettings",
    "RecallStage",
    "Reranked",
    "RerankCatalog",
    "RerankStage",
    "SharesTerms",
    "SuggestStage",
]


# -- recall -------------------------------------------------------------------------------
@runtime_checkable
class CandidateMerger(Protocol):
    """Runs the recall sources and merges their lists (:class:`funnel.recall.merger.Merger`)."""

    def recall(self, request: RecallRequest) -> MergedCandidates:
        """Up to ``request.k`` merged candidates, best first, with their provenance."""
        ...

    def use_catalog(self, rows: Callable[[list[str]], np.ndarray],
                    id_rank: np.ndarray) -> None:
        """Dedupe by catalog row and break ties on ``id_rank[row]`` (set once, at load)."""
        ...

    def close(self) -> None: ...


class RecallSettings(Protocol):
    """What the engine reads of the ``[recall]`` config."""

    @property
    def session_exclude_recent(self) -> bool:
        """A browse feed leaves out the items the session already clicked."""
        ...


@runtime_checkable
class RecallStage(Protocol):
    """The loaded candidate sources and the merger over them."""

    @property
    def sources(self) -> Mapping[str, Any]:
        """Source name -> source; ``similar`` reads ``vector`` and ``covisit`` directly."""
        ...

    @property
    def merger(self) -> CandidateMerger: ...

    @property
    def config(self) -> RecallSettings: ...


# -- rank ---------------------------------------------------------------------------------
@runtime_checkable
class RankStage(Protocol):
    """Candidate ids + request context -> scores + the feature columns used."""

    @property
    def recall_sources(self) -> tuple[str, ...]:
        """Recall sources whose ranks the stage reads (``rec_*`` columns); empty for none."""
        ...

    @property
    def state_scope(self) -> str:
        """"user": the stage reads the user's whole online state; "session": only the session
        in progress (what its training rows replayed)."""
        ...

    def score(
        self,
        item_ids: list[str],
        *,
        query: str,
        market: str | None,
        state: RecentActions,
        user_id: str | None = None,
        rows: np.ndarray | None = None,
        query_match: Mapping[str, np.ndarray] | None = None,
        recall: Mapping[str, np.ndarray] | None = None,
        now_ms: int | None = None,
    ) -> tuple[np.ndarray, Mapping[str, np.ndarray]]:
        """(pCTR per candidate, the raw feature columns used), aligned with ``item_ids``;
        ``rows``: the candidates' rows in the stage's item snapshot; ``query_match`` their
        ``qm_*`` columns and ``recall`` their ``rec_*`` columns when the caller has them."""
        ...

    def rows(self, item_ids: list[str]) -> np.ndarray:
        """Row of each id in the stage's item snapshot (-1 if absent)."""
        ...


@runtime_checkable
class SharesTerms(Protocol):
    """A rank stage that can take the catalog's term index instead of building its own
    (optional: the engine checks for it at load)."""

    term_index: TermIndex | None

    @property
    def item_cols(self) -> Mapping[str, np.ndarray]:
        """The stage's item snapshot: ``item_id`` and the text columns, by snapshot row."""
        ...


# -- re-rank ------------------------------------------------------------------------------
class RerankCatalog(Protocol):
    """The re-ranker's own item table, which the engine maps catalog rows to at load."""

    def rows(self, item_ids: Sequence[str]) -> np.ndarray: ...


class Reranked(Protocol):
    """The list to show: ids, scores and what each entry is (organic, pinned, sponsored)."""

    @property
    def item_ids(self) -> list[str]: ...

    @property
    def scores(self) -> list[float]: ...

    @property
    def kinds(self) -> list[str]: ...


@runtime_checkable
class RerankStage(Protocol):
    """Ranked candidates -> the k to show (diversity, merchandising, sponsored slots)."""

    @property
    def catalog(self) -> RerankCatalog | None: ...

    def rerank(
        self,
        item_ids: Sequence[str],
        scores: Sequence[float] | np.ndarray,
        *,
        k: int | None = None,
        features: ItemFeatures | None = None,
        sponsored_ids: Sequence[str] = (),
        sponsored_ecpm: Sequence[float] | np.ndarray = (),
        catalog_rows: np.ndarray | None = None,
    ) -> Reranked: ...


# -- suggest ------------------------------------------------------------------------------
@runtime_checkable
class SuggestStage(Protocol):
    """Query completion, related queries and the empty-box hint (``/suggest``, ``/related``,
    ``/hint``)."""

    def complete(
        self,
        prefix: str,
        k: int = 10,
        *,
        user_id: str | None = None,
        categories: Iterable[str] | None = None,
        market: str | None = None,
    ) -> tuple[list[str], np.ndarray]: ...

    def related(self, query: str, k: int = 10) -> list[str]: ...

    def hint(
        self,
        user_id: str | None = None,
        k: int = 1,
        *,
        categories: Iterable[str] | None = None,
        market: str | None = None,
    ) -> list[str]: ...
