"""The funnel's stages as the engine sees them: a few verbs each, typed.

:class:`funnel.engine.core.Engine` holds one recall, rank, re-rank and suggest stage of an
artifact and calls only what these Protocols name; the concrete classes
(:class:`funnel.recall.build.RecallBundle`, :class:`funnel.rank.serving.ServingRanker`,
:class:`funnel.rerank.pipeline.RerankPipeline`, :class:`funnel.suggest.model.QuerySuggester`)
satisfy them structurally (``tests/test_engine_protocols.py`` checks a loaded engine). Inside a
stage anything goes; at the seams, these types.

Attributes are declared as read-only properties: the engine reads them and never assigns them
(a loaded engine is frozen: evaluation builds its own with :func:`dataclasses.replace`).

The serving catalog is the one item table. A stage that keeps per-item arrays (the rank stage's
item snapshot, the re-ranker's attributes) is aligned to it once at load (``aligned_to``: its
arrays re-ordered to catalog rows, items it lacks marked unknown), and is then handed catalog
rows, never ids to look up.
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
    from funnel.vectors import AlignedVectors

RowLookup = Callable[[list[str]], "np.ndarray"]
"""The catalog's id -> row function (``Catalog.rows``: int64 rows, -1 for ids it lacks)."""

__all__ = [
    "CandidateMerger",
    "RankStage",
    "RecallSettings",
    "RecallStage",
    "Reranked",
    "RerankCatalog",
    "RerankStage",
    "RowLookup",
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

    def use_catalog(self, rows: RowLookup, id_rank: np.ndarray) -> None:
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
    """Candidate ids + request context -> scores + the feature columns used.

    Loaded, its rows are its own item snapshot's; :meth:`aligned_to` gives the stage whose
    rows are the catalog's, which is what the engine holds and calls."""

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
        ``rows``: the candidates' rows (of :meth:`rows`: catalog rows once aligned; None: the
        stage maps the ids itself, to the same rows); ``query_match`` their ``qm_*`` columns
        and ``recall`` their ``rec_*`` columns when the caller has them."""
        ...

    def rows(self, item_ids: list[str]) -> np.ndarray:
        """Row of each id (catalog rows once aligned), -1 for items the stage's snapshot
        lacks."""
        ...

    def covers(self, rows: np.ndarray) -> bool:
        """Whether the stage's item snapshot has every item at ``rows``."""
        ...

    def aligned_to(self, item_ids: Sequence[str], *, lookup: RowLookup) -> RankStage:
        """The stage with its per-item arrays re-ordered to the rows of ``item_ids`` (the
        catalog's; ``lookup`` maps ids to those rows): same scores, by catalog row."""
        ...


@runtime_checkable
class SharesTerms(Protocol):
    """A rank stage that can take the catalog's term index instead of building its own
    (optional: the engine checks for it at load)."""

    term_index: TermIndex | None

    @property
    def item_cols(self) -> Mapping[str, np.ndarray]:
        """The stage's item snapshot: ``item_id`` and the text columns, by row of
        :meth:`RankStage.rows` (catalog rows once aligned; ``item_id`` None where the snapshot
        lacks the catalog's item)."""
        ...


# -- re-rank ------------------------------------------------------------------------------
class RerankCatalog(Protocol):
    """The re-ranker's item attributes (and vectors), by catalog row once aligned."""

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
    ) -> Reranked:
        """The list to show; ``catalog_rows``: the items' rows in :attr:`catalog` (catalog
        rows once aligned; None: the stage looks the ids up)."""
        ...

    def aligned_to(
        self, item_ids: Sequence[str], *, lookup: RowLookup,
        vectors: AlignedVectors | None = None,
    ) -> RerankStage:
        """The stage with its item table aligned to the rows of ``item_ids`` (the catalog's),
        reading item vectors through ``vectors`` (the same vectors by those rows) if given."""
        ...


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
        previous_query: str | None = None,
    ) -> tuple[list[str], np.ndarray]: ...

    @property
    def max_completions(self) -> int:
        """The most completions :meth:`complete` can return (the index keeps this many)."""
        ...

    def related(self, query: str, k: int = 10) -> list[str]: ...

    def hint(
        self,
        user_id: str | None = None,
        k: int = 1,
        *,
        categories: Iterable[str] | None = None,
        market: str | None = None,
    ) -> list[str]: ...
