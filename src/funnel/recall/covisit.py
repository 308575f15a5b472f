"""Co-visitation: items clicked near each other in sessions, and items that led to a booking.

Every ordered pair of distinct clicks at most ``window`` positions apart in a session scores
``click_weight / distance``; every click in a booked session scores ``booking_weight`` towards
the booked item. Scores decay with the session's age (half-life ``half_life_days`` before the
newest session), so recent co-visits outweigh old ones. A request is answered from the user's
recent clicks, the most recent weighing most (``recent_decay`` per step back).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import pyarrow as pa

from funnel._checks import check_is_fitted, positive_float, positive_int, validate_params
from funnel.pipeline.dialect import DUCKDB
from funnel.pipeline.stages import PipelineConfig, covisit_sql
from funnel.recall._sql import require_columns, run
from funnel.recall.base import Candidates, RecallRequest
from funnel.recall.persist import NON_NEGATIVE, TopListsPersistence
from funnel.recall.toplists import TopLists


class CoVisitation(TopListsPersistence):
    """Item -> items seen together in sessions, weighted by recency and clicks vs bookings.

    Parameters
    ----------
    window : int
        Largest distance (in clicks) between two co-visited items of one session.
    half_life_days : float
        Age at which a session's pairs count half.
    click_weight, booking_weight : float
        Weight of a click pair, and of a click -> booked item pair.
    top_n : int
        Neighbours kept per item.
    recent_decay : float
        At query time, each step back in the user's recent clicks multiplies their weight.
    exclude_recent : bool
        Leave the user's recent items out of the candidates.

    Example
    -------
    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    >>> s = pa.table({"session_id": ["s1"], "end_ts": [t], "items": [["a", "b"]],
    ...               "booked_item": [None]})
    >>> CoVisitation().fit(s).candidates(RecallRequest(recent_items=["a"])).item_ids.tolist()
    ['b']
    """

    _toplists = ("neighbors_", "neighbors")
    name = "covisit"

    def __init__(
        self,
        *,
        window: int = 3,
        half_life_days: float = 30.0,
        click_weight: float = 1.0,
        booking_weight: float = 3.0,
        top_n: int = 100,
        recent_decay: float = 0.6,
        max_recent: int = 5,
        exclude_recent: bool = True,
    ) -> None:
        self.window = window
        self.half_life_days = half_life_days
        self.click_weight = click_weight
        self.booking_weight = booking_weight
        self.top_n = top_n
        self.recent_decay = recent_decay
        self.max_recent = max_recent
        self.exclude_recent = exclude_recent

    def _check(self) -> None:
        validate_params(self.get_params(), {
            "window": (positive_int, "a positive int"),
            "half_life_days": (positive_float, "a positive float"),
            "click_weight": NON_NEGATIVE, "booking_weight": NON_NEGATIVE,
            "top_n": (positive_int, "a positive int"),
            "recent_decay": (lambda v: 0 < v <= 1, "a float in (0, 1]"),
            "max_recent": (positive_int, "a positive int"),
            "exclude_recent": (lambda v: isinstance(v, bool), "a bool"),
        })

    def pipeline_config(self, base: PipelineConfig | None = None) -> PipelineConfig:
        """The batch stage's parameters that compute this model's pairs (``base`` for the
        other stages' settings)."""
        return replace(base or PipelineConfig(), window=int(self.window),
                       half_life_days=float(self.half_life_days),
                       click_weight=float(self.click_weight),
                       booking_weight=float(self.booking_weight))

    def fit(self, sessions: pa.Table) -> CoVisitation:
        """Learn from ``sessions`` (session_id, end_ts, items: list<str>, booked_item).

        The pairs come from the pipeline's ``covisit`` stage SQL (``funnel.pipeline.stages``),
        the text Spark runs at scale, here on DuckDB over the given table.
        """
        self._check()
        require_columns(sessions, "sessions", ("session_id", "end_ts", "items"))
        if "booked_item" not in sessions.column_names:
            sessions = sessions.append_column(
                "booked_item", pa.nulls(sessions.num_rows, pa.string())
            )
        pairs = run(covisit_sql(DUCKDB, self.pipeline_config()), {"sessions": sessions})
        return self.fit_pairs(pairs)

    def fit_pairs(self, pairs: pa.Table) -> CoVisitation:
        """Keep the ``top_n`` best of pairs the ``covisit`` stage already computed (rows
        ``key, item, score``, e.g. a Spark run's table), as :meth:`fit` does with its own."""
        self._check()
        require_columns(pairs, "covisit pairs", ("key", "item", "score"))
        self.neighbors_ = TopLists.from_table(pairs, self.top_n)
        return self

    def candidates(self, request: RecallRequest) -> Candidates:
        """Neighbours of the recent clicks, each row scaled to its best neighbour."""
        check_is_fitted(self, "neighbors_")
        recent = list(request.recent_items)[-self.max_recent :]
        scores: dict[str, float] = defaultdict(float)
        for step, item in enumerate(reversed(recent)):
            ids, s = self.neighbors_.lookup(item)
            if len(s) == 0:
                continue
            w = self.recent_decay**step / float(s[0])
            for other, value in zip(ids.tolist(), s.tolist(), strict=True):
                scores[other] += w * value
        if self.exclude_recent:
            for item in recent:
                scores.pop(item, None)
        if not scores:
            return Candidates.empty()
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[: request.k]
        return Candidates(
            np.array([b[0] for b in best], dtype=object),
            np.array([b[1] for b in best], dtype=np.float32),
        )

