"""Offline recall@K of candidate sources: does the candidate set contain what the user did next?

Each held-out session gives up to two cases: *next click* (the last click, given the clicks
before it) and *booking* (the booked item, given the clicks before it was first clicked). Every
source and the merged list are asked once with ``k = max(ks)``; a case is a hit at K when the
target is among the first K candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from funnel.recall._sql import require_columns
from funnel.recall.base import CandidateSource, RecallRequest
from funnel.recall.merger import Merger

MERGED = "merged"


@dataclass(frozen=True)
class EvalCase:
    """One prediction: from ``recent`` (most recent last) in ``market``, predict ``target``."""

    recent: tuple[str, ...]
    target: str
    kind: str  # "next_click" or "booking"
    market: str | None = None
    query: str | None = None


def cases_from_sessions(sessions: pa.Table, *, max_recent: int = 5) -> list[EvalCase]:
    """Next-click and booking cases from contract ``sessions`` rows (items in time order)."""
    require_columns(sessions, "sessions", ("items",))
    cols = sessions.column_names
    items = sessions.column("items").to_pylist()
    n = sessions.num_rows
    markets = sessions.column("market").to_pylist() if "market" in cols else [None] * n
    queries = sessions.column("queries").to_pylist() if "queries" in cols else [None] * n
    booked = sessions.column("booked_item").to_pylist() if "booked_item" in cols else [None] * n
    cases: list[EvalCase] = []
    for clicks, market, qs, book in zip(items, markets, queries, booked, strict=True):
        clicks = list(clicks or [])
        query = qs[0] if qs else None
        if len(clicks) >= 2 and clicks[-1] != clicks[-2]:
            cases.append(EvalCase(tuple(clicks[:-1][-max_recent:]), clicks[-1], "next_click",
                                  market, query))
        if book:
            before = clicks[: clicks.index(book)] if book in clicks else clicks
            if before:
                cases.append(EvalCase(tuple(before[-max_recent:]), book, "booking", market, query))
    return cases


def recall_ranks(
    sources: Sequence[CandidateSource],
    cases: Sequence[EvalCase],
    *,
    k: int,
    mergers: Mapping[str, Merger] | None = None,
) -> dict[str, list[int | None]]:
    """Per source (and per named merger): the 0-based rank of each case's target in its first
    ``k`` candidates, or None, aligned with ``cases`` (paired comparisons read these)."""
    mergers = dict(mergers or {})
    ranks: dict[str, list[int | None]] = {name: [] for name in
                                          [s.name for s in sources] + list(mergers)}
    for case in cases:
        request = RecallRequest(
            query=case.query, market=case.market, recent_items=case.recent, k=k
        )
        found: dict[str, list[str]] = {
            s.name: s.candidates(request).item_ids.tolist() for s in sources
        }
        for name, merger in mergers.items():
            found[name] = merger.recall(request).item_ids.tolist()
        for name, lst in found.items():
            ranks[name].append(lst.index(case.target) if case.target in lst else None)
    return ranks


def recall_table(
    sources: Sequence[CandidateSource],
    cases: Sequence[EvalCase],
    *,
    ks: Sequence[int] = (20, 100, 500),
    merger: Merger | None = None,
    mergers: Mapping[str, Merger] | None = None,
) -> list[dict[str, float | str]]:
    """Rows ``{source, target, n, recall@K...}`` per source (and ``merged``, and each of
    ``mergers`` by its name) and case kind."""
    if not ks or any(not isinstance(k, int) or k <= 0 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive ints; got {ks!r}")
    named = {**({MERGED: merger} if merger is not None else {}), **(mergers or {})}
    return recall_rows(recall_ranks(sources, cases, k=max(ks), mergers=named), cases, ks)


def hit(rank: int | None, k: int) -> bool:
    """A target at 0-based ``rank`` (None: not found) is among the first ``k``."""
    return rank is not None and rank < k


def recall_rows(ranks: Mapping[str, Sequence[int | None]], cases: Sequence[EvalCase],
                ks: Sequence[int]) -> list[dict[str, float | str]]:
    """Rows ``{source, target, n, recall@K...}`` of :func:`recall_ranks` output, per name and
    case kind (kinds without cases are left out)."""
    rows: list[dict[str, float | str]] = []
    for name, found in ranks.items():
        for kind in ("next_click", "booking"):
            rs = [r for case, r in zip(cases, found, strict=True) if case.kind == kind]
            if not rs:
                continue
            row: dict[str, float | str] = {"source": name, "target": kind, "n": float(len(rs))}
            for k in ks:
                row[f"recall@{k}"] = sum(hit(r, k) for r in rs) / len(rs)
            rows.append(row)
    return rows
