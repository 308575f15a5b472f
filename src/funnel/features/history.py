"""The user's behaviour sequence as ranker input: one encoding for training rows and serving.

A sequence ranker (DIN, Zhou et al., KDD 2018) attends over the user's last actions against
the candidate. It reads three list columns, most recent last, one entry per action:
``hist_items`` (item ids), ``hist_kinds`` (click / long_click / booking / skip) and
``hist_ages`` (how long ago, as a bucket label). :func:`history_columns` derives them from a
:class:`~funnel.features.personalization.RecentActions` (its ``actions`` sequence, kept across
sessions by :func:`~funnel.features.personalization.observe`); training rows
(``features.training_set``) and the served ranker (``rank.serving``) both call it, with the
state at the impression's (request's) time, so the two cannot drift apart.
"""

from __future__ import annotations

import bisect

from funnel.features.personalization import RecentActions

HISTORY_KINDS = ("click", "long_click", "booking", "skip")
HISTORY_COLUMNS = ("hist_items", "hist_kinds", "hist_ages")
AGE_EDGES_S = (60, 600, 3_600, 6 * 3_600, 86_400, 7 * 86_400, 30 * 86_400)
"""Upper edges (seconds) of the age buckets: a minute, ten, an hour, six, a day, a week, a month,
older. Log-spaced because a minute-old click says "this session" and a week-old one "taste"."""
AGE_LABELS = tuple(f"age{b}" for b in range(len(AGE_EDGES_S) + 1))
DEFAULT_HISTORY_LEN = 20


def age_bucket(age_ms: int) -> str:
    """The :data:`AGE_LABELS` entry of an action ``age_ms`` old (negative ages count as 0)."""
    return AGE_LABELS[bisect.bisect_left(AGE_EDGES_S, max(age_ms, 0) / 1000.0)]


def history_columns(
    state: RecentActions, now_ms: int | None, n: int = DEFAULT_HISTORY_LEN
) -> dict[str, list[str]]:
    """The last ``n`` actions of ``state`` as ``{column: list}`` (:data:`HISTORY_COLUMNS`).

    A click is a ``long_click`` once its dwell reached the threshold before ``now_ms`` (as
    ``emb_long_click_sim`` counts it); actions at or after ``now_ms`` are not seen. ``now_ms``
    None (a caller without the request's time) takes the latest action's time as now.
    """
    if n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    acts = state.actions
    if now_ms is None:  # every long click visible, as personalization_features does
        now, seen = (acts[-1][2] if acts else 0), 1 << 62
    else:
        now, seen = now_ms, now_ms
        acts = tuple(a for a in acts if a[2] < now_ms)
    acts = acts[-n:]
    return {
        "hist_items": [item for item, _, _, _ in acts],
        "hist_kinds": [
            "long_click" if kind == "click" and 0 < long_at < seen else kind
            for _, kind, _, long_at in acts
        ],
        "hist_ages": [age_bucket(now - ts) for _, _, ts, _ in acts],
    }
